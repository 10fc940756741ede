//! The worker checked against a reference model (mountpoint-s3's way): random interleavings of
//! sequential and random reads of several files, object rewrites on the UFS (same and other
//! sizes), evictions under a small quota, worker restarts over the same cache, damaged chunks
//! and cache I/O errors, over the in-memory cache behind the failure-injecting wrapper.
//!
//! The property: every byte a read returns is the byte of the object version its reference
//! named (what the metadata said when the file was opened), or the read fails with ESTALE
//! because that version is gone from the UFS. Never a wrong byte, never a hang.
//!
//! Cases: `PROPTEST_CASES` (CI: 32, about 10 s); a longer run:
//! `PROPTEST_CASES=2000 cargo test -p cistern-worker --test model`. Failing cases are kept in
//! `<test>.proptest-regressions` beside the test and replayed first.

use cistern_rpc::CacheKey;
use cistern_ufs::Ufs;
use cistern_worker::cache::{DataCache, FaultyCache, MemoryCache};
use cistern_worker::{FileRef, ReadOptions, Worker, BLOCK_SIZE};
use proptest::prelude::*;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

const FILES: usize = 3;

#[derive(Debug, Clone)]
enum Op {
    /// Opens file `f` (takes its current version) and reads `len` at `offset` (fractions of
    /// the size, so reads land inside and at the ends).
    Read { f: usize, at: u16, len: u32 },
    /// Reads the whole file, as a sequential reader in 1 MiB requests.
    ReadAll { f: usize },
    /// Keeps reading with a reference taken before the last rewrite (an old descriptor).
    ReadOld { f: usize, at: u16, len: u32 },
    /// Rewrites file `f` on the UFS with a new version of `len` bytes.
    Rewrite { f: usize, len: u32 },
    /// Flips a byte of a cached chunk of block `b` of the current version of `f`.
    Damage { f: usize, b: u8 },
    /// The next `n` cache reads / writes fail with EIO.
    FailReads(u8),
    FailWrites(u8),
    /// A new worker over the same cache (an SSD tier survives a restart).
    Restart,
}

fn op() -> impl Strategy<Value = Op> {
    let f = 0..FILES;
    prop_oneof![
        6 => (f.clone(), any::<u16>(), 1u32..(3 << 20)).prop_map(|(f, at, len)| Op::Read { f, at, len }),
        2 => f.clone().prop_map(|f| Op::ReadAll { f }),
        2 => (f.clone(), any::<u16>(), 1u32..(1 << 20)).prop_map(|(f, at, len)| Op::ReadOld { f, at, len }),
        2 => (f.clone(), 0u32..(9 << 20)).prop_map(|(f, len)| Op::Rewrite { f, len }),
        1 => (f.clone(), 0u8..3).prop_map(|(f, b)| Op::Damage { f, b }),
        1 => (1u8..5).prop_map(Op::FailReads),
        1 => (1u8..5).prop_map(Op::FailWrites),
        1 => Just(Op::Restart),
    ]
}

/// One version of one file: its bytes and the reference a worker reads it by.
#[derive(Clone)]
struct Version {
    content: Arc<Vec<u8>>,
    file: FileRef,
}

struct Model {
    rt: tokio::runtime::Runtime,
    dir: tempfile::TempDir,
    ufs: Ufs,
    cache: Arc<FaultyCache<Arc<MemoryCache>>>,
    worker: Arc<Worker>,
    /// Per file: the current version, and the one before it (what an old descriptor holds).
    current: Vec<Version>,
    previous: Vec<Option<Version>>,
    generation: u64,
}

fn content(seed: u64, len: usize) -> Vec<u8> {
    (0..len).map(|i| ((i as u64).wrapping_mul(2654435761).wrapping_add(seed * 97) >> 7) as u8).collect()
}

impl Model {
    fn new() -> Model {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let op = opendal::Operator::new(opendal::services::Fs::default().root(dir.path().to_str().unwrap())).unwrap();
        let ufs = Ufs::from_operator(op, "local://model");
        // Three blocks of quota for files of up to nine: evictions all the time.
        let cache = Arc::new(FaultyCache::new(Arc::new(MemoryCache::new(3 * BLOCK_SIZE))));
        let worker = Worker::with_cache(0, cache.clone(), ReadOptions::default());
        let mut m = Model { rt, dir, ufs, cache, worker, current: Vec::new(), previous: vec![None; FILES], generation: 0 };
        for f in 0..FILES {
            let v = m.write(f, (f + 1) * 1_500_000);
            m.current.push(v);
        }
        m
    }

    /// Writes a new version of file `f` and returns it as the master would list it.
    fn write(&mut self, f: usize, len: usize) -> Version {
        self.generation += 1;
        let path = format!("f{f}.bin");
        let bytes = content(self.generation, len);
        std::fs::write(self.dir.path().join(&path), &bytes).unwrap();
        let meta = std::fs::metadata(self.dir.path().join(&path)).unwrap();
        let d = meta.modified().unwrap().duration_since(UNIX_EPOCH).unwrap();
        let file = FileRef {
            ufs: self.ufs.clone(),
            path: path.clone(),
            size: len as u64,
            key: CacheKey::for_test(&format!("{path}@{}", self.generation)),
            etag: None,
            mtime: Some((d.as_secs() as i64, d.subsec_nanos())),
            signed: None,
        };
        Version { content: Arc::new(bytes), file }
    }

    /// Reads and checks against the version read; `stale_ok` when that version may be gone.
    fn check_read(&self, v: &Version, offset: u64, len: u64, stale_ok: bool) -> Result<(), TestCaseError> {
        let w = self.worker.clone();
        let file = v.file.clone();
        let r = self.rt.block_on(async move { tokio::time::timeout(Duration::from_secs(30), w.read(&file, offset, len)).await });
        let r = r.map_err(|_| TestCaseError::fail(format!("a read of {} at {offset} hung", v.file.path)))?;
        match r {
            Ok(got) => {
                let end = (offset + len).min(v.content.len() as u64);
                let want = if offset >= end { &[][..] } else { &v.content[offset as usize..end as usize] };
                prop_assert!(got[..] == *want, "{}: wrong bytes at {offset}+{len} ({} returned, {} wanted)", v.file.path, got.len(), want.len());
            }
            Err(e) => prop_assert!(stale_ok && e.errno() == cistern_rpc::Errno::Stale, "{}: read at {offset}+{len} failed: {e}", v.file.path),
        }
        Ok(())
    }

    fn apply(&mut self, op: &Op) -> Result<(), TestCaseError> {
        match *op {
            Op::Read { f, at, len } => {
                let v = self.current[f].clone();
                let offset = v.content.len() as u64 * at as u64 / u16::MAX as u64;
                self.check_read(&v, offset, len as u64, false)?;
            }
            Op::ReadAll { f } => {
                let v = self.current[f].clone();
                for offset in (0..v.content.len().max(1) as u64).step_by(1 << 20) {
                    self.check_read(&v, offset, 1 << 20, false)?;
                }
            }
            Op::ReadOld { f, at, len } => {
                if let Some(v) = self.previous[f].clone() {
                    let offset = v.content.len() as u64 * at as u64 / u16::MAX as u64;
                    self.check_read(&v, offset, len as u64, true)?;
                }
            }
            Op::Rewrite { f, len } => {
                // mtimes must differ: a rewrite in the same nanosecond is no rewrite.
                std::thread::sleep(Duration::from_millis(2));
                let v = self.write(f, len as usize);
                self.previous[f] = Some(std::mem::replace(&mut self.current[f], v));
            }
            Op::Damage { f, b } => {
                let _ = self.cache.inner.damage(&self.current[f].file.key, b as u64);
            }
            Op::FailReads(n) => self.cache.fail_next_reads(n as u32),
            Op::FailWrites(n) => self.cache.fail_next_writes(n as u32),
            Op::Restart => self.worker = Worker::with_cache(0, self.cache.clone(), ReadOptions::default()),
        }
        prop_assert!(self.cache.used() <= self.cache.quota(), "the quota was passed: {} > {}", self.cache.used(), self.cache.quota());
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(32), ..ProptestConfig::default() })]

    #[test]
    fn every_byte_is_the_named_versions_or_the_read_is_stale(ops in proptest::collection::vec(op(), 1..24)) {
        let mut m = Model::new();
        for op in &ops {
            m.apply(op)?;
        }
    }
}

/// Two cache paths, one of them stalled: reads of what the fast one holds, and reads that go
/// to the UFS, keep answering within a bound while the stalled cache's calls block (they run
/// on the blocking pool, not on the async threads).
#[test]
fn a_stalled_cache_does_not_stall_the_other_workers_reads() {
    let m = Model::new();
    let slow = Arc::new(FaultyCache::new(Arc::new(MemoryCache::new(64 * BLOCK_SIZE))));
    let stalled = Worker::with_cache(1, slow.clone(), ReadOptions::default());
    let fast = m.worker.clone();
    let v = m.current[0].clone();
    // Warm the fast worker, then stall the other's cache for 3 s per call.
    m.rt.block_on(fast.read(&v.file, 0, v.content.len() as u64)).unwrap();
    slow.set_delay(Duration::from_secs(3));
    let stuck: Vec<_> = (0..4)
        .map(|i| {
            let (w, f) = (stalled.clone(), v.file.clone());
            m.rt.spawn(async move { w.read(&f, i * 4096, 4096).await })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(100));
    let started = std::time::Instant::now();
    for i in 0..50u64 {
        let got = m.rt.block_on(fast.read(&v.file, (i * 7919) % (v.content.len() as u64 - 4096), 4096)).unwrap();
        assert_eq!(got.len(), 4096);
    }
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(2), "50 cached reads took {elapsed:?} while another cache stalled");
    for s in stuck {
        let got = m.rt.block_on(s).unwrap().unwrap();
        assert_eq!(got.len(), 4096);
    }
}
