//! The worker's read-through against an in-memory UFS whose requests are counted.

use cistern_ufs::Ufs;
use cistern_worker::{FileRef, LevelSpec, ReadOptions, Worker, BLOCK_SIZE};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;

fn data(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 253) as u8).collect()
}

async fn ufs_with(path: &str, content: &[u8]) -> Ufs {
    let op = opendal::Operator::new(opendal::services::Memory::default()).unwrap();
    op.write(path, content.to_vec()).await.unwrap();
    Ufs::from_operator(op, "memory://test")
}

/// A worker with one level on `dir`: SSD when `persistent`, else MEM.
fn worker(dir: &Path, quota: u64, high: f64, low: f64, persistent: bool) -> std::io::Result<Arc<Worker>> {
    let medium = if persistent { "SSD" } else { "MEM" };
    Worker::open(0, &[LevelSpec::single(medium, dir, quota, high, low)], ReadOptions::default())
}

fn file(ufs: &Ufs, path: &str, size: usize) -> FileRef {
    FileRef { ufs: ufs.clone(), path: path.into(), size: size as u64, key: cistern_rpc::CacheKey::for_test(path), etag: None, mtime: None, signed: None }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_readers_of_a_missing_block_cause_one_fetch() {
    let content = data(BLOCK_SIZE as usize);
    let ufs = ufs_with("one.bin", &content).await;
    let dir = tempfile::tempdir().unwrap();
    let w = worker(dir.path(), 64 * BLOCK_SIZE, 1.0, 1.0, false).unwrap();
    let f = file(&ufs, "one.bin", content.len());
    let readers: Vec<_> = (0..16u64)
        .map(|i| {
            let (w, f) = (w.clone(), f.clone());
            tokio::spawn(async move { w.read(&f, i * 4096, 4096).await.unwrap() })
        })
        .collect();
    for (i, r) in readers.into_iter().enumerate() {
        let got = r.await.unwrap();
        assert_eq!(&got[..], &content[i * 4096..(i + 1) * 4096]);
    }
    // The first reader's head (one checksum chunk) first, the rest of the block behind it at
    // once; every other reader joins one of the two: no byte is fetched twice.
    assert_eq!(ufs.counters.read_bytes.load(Ordering::Relaxed), BLOCK_SIZE, "each byte fetched once for 16 readers");
    assert!(ufs.counters.read_requests.load(Ordering::Relaxed) <= 2, "the head and the rest of the block");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_worker_serves_its_ssd_cache_without_the_ufs() {
    let content = data(3 * BLOCK_SIZE as usize + 12345);
    let ufs = ufs_with("big.bin", &content).await;
    let dir = tempfile::tempdir().unwrap();
    let f = file(&ufs, "big.bin", content.len());
    {
        let w = worker(dir.path(), 64 * BLOCK_SIZE, 1.0, 1.0, true).unwrap();
        assert_eq!(&w.read(&f, 0, content.len() as u64).await.unwrap()[..], &content[..]);
    }
    let before = ufs.counters.read_bytes.load(Ordering::Relaxed);
    let w = worker(dir.path(), 64 * BLOCK_SIZE, 1.0, 1.0, true).unwrap();
    assert_eq!(w.cached_bytes(), content.len() as u64);
    assert_eq!(&w.read(&f, 0, content.len() as u64).await.unwrap()[..], &content[..]);
    assert_eq!(ufs.counters.read_bytes.load(Ordering::Relaxed), before, "no UFS bytes after the restart");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_cached_block_is_refetched_and_never_served() {
    let content = data(BLOCK_SIZE as usize);
    let ufs = ufs_with("c.bin", &content).await;
    let dir = tempfile::tempdir().unwrap();
    let f = file(&ufs, "c.bin", content.len());
    let first = worker(dir.path(), 64 * BLOCK_SIZE, 1.0, 1.0, true).unwrap();
    first.read(&f, 0, 10).await.unwrap();
    // The first read returns with its head; the rest of the block lands behind it.
    for _ in 0..500 {
        if first.cached_bytes() == BLOCK_SIZE {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(first.cached_bytes(), BLOCK_SIZE, "the whole block stored");
    drop(first);
    // Bit rot on disk while the worker is down; the restarted worker has only the disk.
    let cache_file = dir.path().join(f.key.as_str());
    let mut bytes = std::fs::read(&cache_file).unwrap();
    bytes[5000] ^= 0x55;
    std::fs::write(&cache_file, &bytes).unwrap();
    let w = worker(dir.path(), 64 * BLOCK_SIZE, 1.0, 1.0, true).unwrap();
    assert_eq!(w.cached_bytes(), BLOCK_SIZE, "re-indexed");
    let got = w.read(&f, 4096, 4096).await.unwrap();
    assert_eq!(&got[..], &content[4096..8192], "served corrupt bytes");
    assert_eq!(w.corrupt_blocks(), 1);
    assert_eq!(w.counters.ufs_fetches.load(Ordering::Relaxed), 1, "refetched once");
    let again = w.read(&f, 4096, 4096).await.unwrap();
    assert_eq!(&again[..], &content[4096..8192]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_quota_holds_under_concurrent_readers_of_more_than_fits() {
    let content = data(4 * BLOCK_SIZE as usize);
    let op = opendal::Operator::new(opendal::services::Memory::default()).unwrap();
    for i in 0..6 {
        op.write(&format!("f{i}"), content.clone()).await.unwrap();
    }
    let ufs = Ufs::from_operator(op, "memory://test");
    let dir = tempfile::tempdir().unwrap();
    let quota = 5 * BLOCK_SIZE; // 24 blocks wanted, 5 fit
    let w = worker(dir.path(), quota, 0.9, 0.6, false).unwrap();
    let max_seen = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let tasks: Vec<_> = (0..6)
        .map(|i| {
            let (w, f, max_seen) = (w.clone(), file(&ufs, &format!("f{i}"), content.len()), max_seen.clone());
            let expected = content.clone();
            tokio::spawn(async move {
                for off in (0..expected.len() as u64).step_by(1 << 20) {
                    let got = w.read(&f, off, 1 << 20).await.unwrap();
                    assert_eq!(&got[..], &expected[off as usize..off as usize + (1 << 20)]);
                    max_seen.fetch_max(w.cached_bytes(), Ordering::Relaxed);
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    assert!(max_seen.load(Ordering::Relaxed) <= quota, "quota exceeded: {}", max_seen.load(Ordering::Relaxed));
    assert!(w.cached_bytes() <= quota);
    let on_disk: u64 = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| {
            use std::os::unix::fs::MetadataExt;
            e.unwrap().metadata().unwrap().blocks() * 512
        })
        .sum();
    assert!(on_disk <= quota + (1 << 20), "{on_disk} bytes allocated on disk for a {quota} quota");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn random_small_reads_fetch_small_units_and_concurrent_ones_coalesce() {
    let content = data(8 * BLOCK_SIZE as usize);
    let ufs = ufs_with("r.bin", &content).await;
    let dir = tempfile::tempdir().unwrap();
    let w = worker(dir.path(), 64 * BLOCK_SIZE, 1.0, 1.0, false).unwrap();
    let f = file(&ufs, "r.bin", content.len());
    let unit = ReadOptions::default().random_unit;
    // Eight readers of the same 4 KiB in the middle of block 5: one request of one unit.
    let at = 5 * BLOCK_SIZE + (1 << 20) + 100;
    let readers: Vec<_> = (0..8)
        .map(|_| {
            let (w, f) = (w.clone(), f.clone());
            tokio::spawn(async move { w.read(&f, at, 4096).await.unwrap() })
        })
        .collect();
    for r in readers {
        assert_eq!(&r.await.unwrap()[..], &content[at as usize..at as usize + 4096]);
    }
    assert_eq!(ufs.counters.read_requests.load(Ordering::Relaxed), 1);
    assert_eq!(w.counters.ufs_fetched_bytes.load(Ordering::Relaxed), unit, "fetched more than one unit");
    // Scattered reads (none following cached data or the previous read, none crossing a block,
    // none at the head of the file, which all look sequential): each pulls one unit, not a 4 MiB block; a repeat is
    // served locally.
    // Consecutive reads are over 4 MiB apart, as a random reader's are on a large object.
    let offsets: Vec<u64> =
        (0..20u64).map(|i| (if i % 2 == 0 { 1 } else { 5 } + (i / 2) % 3) * BLOCK_SIZE + (i * 3 % 8) * (512 << 10) + 1000).collect();
    for &off in &offsets {
        assert_eq!(&w.read(&f, off, 4096).await.unwrap()[..], &content[off as usize..off as usize + 4096]);
    }
    let fetched = w.counters.ufs_fetched_bytes.load(Ordering::Relaxed);
    assert!(fetched <= 21 * unit, "{fetched} bytes fetched for 21 random 4 KiB reads");
    let before = ufs.counters.read_bytes.load(Ordering::Relaxed);
    for &off in &offsets {
        assert_eq!(&w.read(&f, off, 4096).await.unwrap()[..], &content[off as usize..off as usize + 4096]);
    }
    assert_eq!(ufs.counters.read_bytes.load(Ordering::Relaxed), before, "repeated random reads went to the UFS");
    // Reading the whole file afterwards fills the gaps and returns the right bytes.
    assert_eq!(&w.read(&f, 0, content.len() as u64).await.unwrap()[..], &content[..]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocks_evicted_from_mem_are_served_from_ssd_without_the_ufs() {
    let content = data(6 * BLOCK_SIZE as usize);
    let ufs = ufs_with("d.bin", &content).await;
    let dir = tempfile::tempdir().unwrap();
    let levels = [
        LevelSpec::single("MEM", &dir.path().join("mem"), 2 * BLOCK_SIZE, 1.0, 0.5),
        LevelSpec::single("SSD", &dir.path().join("ssd"), 16 * BLOCK_SIZE, 0.95, 0.7),
    ];
    let w = Worker::open(0, &levels, ReadOptions::default()).unwrap();
    let f = file(&ufs, "d.bin", content.len());
    assert_eq!(&w.read(&f, 0, content.len() as u64).await.unwrap()[..], &content[..]);
    let stats = w.cache().stats();
    assert!(stats[0].used <= 2 * BLOCK_SIZE, "{stats:?}");
    assert!(stats[1].used >= 4 * BLOCK_SIZE, "evicted blocks were not demoted: {stats:?}");
    let before = ufs.counters.read_bytes.load(Ordering::Relaxed);
    assert_eq!(&w.read(&f, 0, content.len() as u64).await.unwrap()[..], &content[..]);
    assert_eq!(ufs.counters.read_bytes.load(Ordering::Relaxed), before, "a second pass went to the UFS");
}

/// A file's tail read as a random miss (the kernel's readahead can ask for it before the
/// block) racing the whole-block fetch of a sequential reader: each byte comes from the UFS
/// once, whichever registers first.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tail_read_racing_its_block_fetch_is_fetched_once() {
    let size = (BLOCK_SIZE + 3 * 1024 * 1024 + 5000) as usize;
    let content = data(size);
    let op = opendal::Operator::new(opendal::services::Memory::default()).unwrap();
    for i in 0..24 {
        op.write(&format!("f{i}.bin"), content.clone()).await.unwrap();
    }
    let ufs = Ufs::from_operator(op, "memory://test");
    let dir = tempfile::tempdir().unwrap();
    let w = worker(dir.path(), 512 * BLOCK_SIZE, 1.0, 1.0, false).unwrap();
    let mut expected = 0;
    for i in 0..24 {
        let f = file(&ufs, &format!("f{i}.bin"), size);
        // Block 0 cached, and the last read at the head: the tail is not near it (random).
        w.read(&f, 0, BLOCK_SIZE).await.unwrap();
        w.read(&f, 0, 4096).await.unwrap();
        expected += BLOCK_SIZE;
        let tail_at = size as u64 - 5000;
        let (w1, f1, w2, f2) = (w.clone(), f.clone(), w.clone(), f.clone());
        let tail = tokio::spawn(async move { w1.read(&f1, tail_at, 5000).await.unwrap() });
        let block = tokio::spawn(async move { w2.read(&f2, BLOCK_SIZE, 1 << 20).await.unwrap() });
        let (tail, block) = (tail.await.unwrap(), block.await.unwrap());
        assert_eq!(&tail[..], &content[tail_at as usize..]);
        assert_eq!(&block[..], &content[BLOCK_SIZE as usize..BLOCK_SIZE as usize + (1 << 20)]);
        expected += size as u64 - BLOCK_SIZE;
    }
    assert_eq!(w.counters.ufs_fetched_bytes.load(Ordering::Relaxed), expected, "bytes fetched more than once");
}

/// A cache read that fails (here: the cache file truncated under the worker, as a failing disk
/// or a full tmpfs would leave it) is served from the UFS with the right bytes and counted;
/// after a few such errors the path is taken out of service and reads go to the UFS without
/// touching it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_cache_falls_back_to_the_ufs_and_is_taken_out_of_service() {
    let content = data(2 * BLOCK_SIZE as usize + 777);
    let ufs = ufs_with("f.bin", &content).await;
    let dir = tempfile::tempdir().unwrap();
    let f = file(&ufs, "f.bin", content.len());
    {
        let w = worker(dir.path(), 64 * BLOCK_SIZE, 1.0, 1.0, true).unwrap();
        assert_eq!(&w.read(&f, 0, content.len() as u64).await.unwrap()[..], &content[..]);
    }
    // Restarted (so nothing is served from memory), then the file fails under it.
    let w = worker(dir.path(), 64 * BLOCK_SIZE, 1.0, 1.0, true).unwrap();
    std::fs::OpenOptions::new().write(true).open(dir.path().join(f.key.as_str())).unwrap().set_len(0).unwrap();
    let before = ufs.counters.read_bytes.load(Ordering::Relaxed);
    for round in 0..6u64 {
        let off = (round * 1_000_003) % (content.len() as u64 - 4096);
        assert_eq!(&w.read(&f, off, 4096).await.unwrap()[..], &content[off as usize..off as usize + 4096], "round {round}");
    }
    let errors = w.counters.cache_errors.load(Ordering::Relaxed);
    assert!(errors >= 1, "the failed cache reads were not counted");
    // A file's head and the rest of its block are fetched at once, so one more failed read
    // may be under way when the path is taken out.
    assert!(errors <= cistern_worker::store::health::MAX_CONSECUTIVE as u64 + 1, "{errors} errors: the failing path stayed in service");
    assert!(w.tiers().unwrap().levels()[0].stores()[0].health.out_of_service());
    assert!(ufs.counters.read_bytes.load(Ordering::Relaxed) > before, "not served from the UFS");
}

/// Cache files damaged behind their checksum records while the worker was down (bytes
/// flipped, a file truncated, a data file lost with its record left): after the restart every
/// byte read is the object's, and a damaged complete file is never handed out for passthrough.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_cache_files_after_a_restart_serve_no_wrong_byte() {
    let names = ["a.bin", "b.bin", "c.bin"];
    let op = opendal::Operator::new(opendal::services::Memory::default()).unwrap();
    let mut contents = Vec::new();
    for (i, n) in names.iter().enumerate() {
        let c: Vec<u8> = (0..(2 * BLOCK_SIZE as usize + 1234 * (i + 1))).map(|j| ((j * 7 + i * 31) % 253) as u8).collect();
        op.write(n, c.clone()).await.unwrap();
        contents.push(c);
    }
    let ufs = Ufs::from_operator(op, "memory://test");
    let dir = tempfile::tempdir().unwrap();
    let files: Vec<FileRef> = names.iter().zip(&contents).map(|(n, c)| file(&ufs, n, c.len())).collect();
    {
        let w = worker(dir.path(), 64 * BLOCK_SIZE, 1.0, 1.0, true).unwrap();
        for (f, c) in files.iter().zip(&contents) {
            assert_eq!(&w.read(f, 0, c.len() as u64).await.unwrap()[..], &c[..]);
        }
    }
    let path = |f: &FileRef| dir.path().join(f.key.as_str());
    // a: bytes flipped in its second block; b: cut in its first block; c: data gone, record kept.
    let a = std::fs::OpenOptions::new().write(true).open(path(&files[0])).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&a, &[0xAA; 100], BLOCK_SIZE + 5000).unwrap();
    std::fs::OpenOptions::new().write(true).open(path(&files[1])).unwrap().set_len(BLOCK_SIZE / 2).unwrap();
    std::fs::remove_file(path(&files[2])).unwrap();

    let w = worker(dir.path(), 64 * BLOCK_SIZE, 1.0, 1.0, true).unwrap();
    assert!(w.cache().open_cache_file(&files[0].key, true).unwrap().is_none(), "a damaged complete file offered for passthrough");
    for (f, c) in files.iter().zip(&contents) {
        for (off, len) in [(0u64, c.len() as u64), (BLOCK_SIZE + 4096, 8192), (BLOCK_SIZE / 2 - 10, 20)] {
            let got = w.read(f, off, len).await.unwrap();
            assert!(got[..] == c[off as usize..(off + len) as usize], "{}: wrong bytes at {off}", f.path);
        }
    }
    assert!(w.corrupt_blocks() >= 1, "the flipped bytes were not caught");
}

/// What a tier holds on disk (data, checksum records, directories, and files evicted while a
/// reader still held them open) stays within its quota under concurrent readers, measured
/// with statfs on a tmpfs of the tier's own (root: mounted here for the test).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_tier_stays_within_its_quota_on_disk_under_concurrent_readers() {
    let mnt = tempfile::tempdir().unwrap();
    let mounted = std::process::Command::new("mount").args(["-t", "tmpfs", "-o", "size=64m", "tmpfs"]).arg(mnt.path()).status();
    if !mounted.is_ok_and(|s| s.success()) {
        panic!("cannot mount a tmpfs at {} (the test needs root)", mnt.path().display());
    }
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(mnt.path().to_path_buf());
    let on_disk = |p: &Path| {
        let s = nix::sys::statvfs::statvfs(p).unwrap();
        (s.blocks() - s.blocks_free()) as u64 * s.fragment_size() as u64
    };
    let baseline = on_disk(mnt.path());
    const QUOTA: u64 = 16 << 20;
    let op = opendal::Operator::new(opendal::services::Memory::default()).unwrap();
    let mut files = Vec::new();
    for i in 0..6usize {
        let len = 5 * (1 << 20) + i * 70_001;
        op.write(&format!("f{i}"), data(len)).await.unwrap();
        files.push(len);
    }
    let ufs = Ufs::from_operator(op, "memory://test");
    let w = worker(&mnt.path().join("tier"), QUOTA, 1.0, 1.0, true).unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let (stop, dir) = (stop.clone(), mnt.path().to_path_buf());
        std::thread::spawn(move || {
            let mut peak = 0;
            while !stop.load(Ordering::Relaxed) {
                peak = peak.max(on_disk(&dir));
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
            peak
        })
    };
    let readers: Vec<_> = (0..4u64)
        .map(|r| {
            let (w, ufs, files) = (w.clone(), ufs.clone(), files.clone());
            tokio::spawn(async move {
                // What passthrough and short-circuit readers do: hold complete cache files
                // open (the last two each reader read whole) while the cache churns.
                let mut holding = std::collections::VecDeque::new();
                for n in 0..40u64 {
                    let i = ((r * 7 + n * 13) % files.len() as u64) as usize;
                    let f = file(&ufs, &format!("f{i}"), files[i]);
                    let (off, len) = if n % 5 == 0 { (0, files[i] as u64) } else { ((n * 1_234_567 + r * 999_983) % (files[i] as u64 - 300_000), 262_144) };
                    let got = w.read(&f, off, len).await.unwrap();
                    assert_eq!(&got[..], &data(files[i])[off as usize..(off + len) as usize]);
                    if n % 5 == 0 {
                        if let Ok(Some(h)) = w.cache().open_cache_file(&f.key, true) {
                            holding.push_back(h);
                            if holding.len() > 2 {
                                holding.pop_front();
                            }
                        }
                    }
                }
            })
        })
        .collect();
    for r in readers {
        r.await.unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    let peak = sampler.join().unwrap() - baseline;
    assert!(w.counters.ufs_fetches.load(Ordering::Relaxed) > 10, "the readers did not churn the cache");
    assert!(peak <= QUOTA, "the tier took {peak} bytes on disk for a quota of {QUOTA}");
    println!("peak on disk: {peak} bytes of a {QUOTA} quota");
}

/// Files on disk are hostile input too: a record file far larger than its data file could
/// have (or a data file past any object's size) is removed at re-index, not loaded, and the
/// tier opens and serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_cache_records_are_removed_at_reindex() {
    let content = data(100_000);
    let ufs = ufs_with("s.bin", &content).await;
    let dir = tempfile::tempdir().unwrap();
    let f = file(&ufs, "s.bin", content.len());
    {
        let w = worker(dir.path(), 64 * BLOCK_SIZE, 1.0, 1.0, true).unwrap();
        assert_eq!(&w.read(&f, 0, content.len() as u64).await.unwrap()[..], &content[..]);
    }
    let sidecar = dir.path().join(format!("{}.crc", f.key.as_str()));
    std::fs::OpenOptions::new().write(true).open(&sidecar).unwrap().set_len(1 << 30).unwrap();
    let w = worker(dir.path(), 64 * BLOCK_SIZE, 1.0, 1.0, true).unwrap();
    assert!(!sidecar.exists() && !dir.path().join(f.key.as_str()).exists(), "the damaged file was kept");
    assert_eq!(w.cached_bytes(), 0);
    assert_eq!(&w.read(&f, 0, content.len() as u64).await.unwrap()[..], &content[..]);
}
