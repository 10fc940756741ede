//! The master's namespace at scale: a synthetic UFS of 1 000 000 files (OpenDAL's in-memory
//! service, 1 000 directories of 1 000 files, names like a Parquet dataset's), listed into the
//! persistent store. Prints bytes per file on disk and in RAM, the listing time, and `getattr`
//! and `lookup` operations per second on the reopened store (UFS unreachable), single-threaded
//! and from 2 threads. `cargo bench -p cistern-master --bench scale`; `CISTERN_BENCH_FILES`
//! sets the file count (default 1 000 000).

use cistern_master::{Namespace, NsMount, ROOT_INO};
use cistern_ufs::Ufs;
use std::sync::Arc;
use std::time::Instant;

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    statm.split(' ').nth(1).and_then(|p| p.parse::<u64>().ok()).unwrap_or(0) * 4096
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let files: u64 = std::env::var("CISTERN_BENCH_FILES").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let per_dir = 1000u64;
    let dirs = files.div_ceil(per_dir);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let op = opendal::Operator::new(opendal::services::Memory::default()).unwrap();
    eprintln!("building a synthetic UFS of {files} files ...");
    rt.block_on(async {
        for i in 0..files {
            let path = format!("year=2026/part-{:04}/data-{:06}.snappy.parquet", i / per_dir, i % per_dir);
            op.write(&path, vec![7u8]).await.unwrap();
        }
    });
    let meta = tempfile::tempdir().unwrap();
    let mounts = |u: Ufs| vec![NsMount { ufs: u, path: "/".into() }];
    let ufs = Ufs::from_operator(op.clone(), "memory://bench");

    let rss0 = rss_bytes();
    let t = Instant::now();
    let (listed, sample) = rt.block_on(async {
        let ns = Namespace::open(meta.path(), mounts(ufs), None).unwrap();
        let top = ns.lookup(ROOT_INO, "year=2026").await.unwrap();
        let mut n = 0u64;
        let mut sample = Vec::new();
        for d in ns.readdir(top.ino).await.unwrap() {
            for f in ns.readdir(d.ino).await.unwrap() {
                n += 1;
                if n.is_multiple_of(97) {
                    sample.push((d.ino, f.name.clone(), f.ino));
                }
            }
        }
        (n, sample)
    });
    let list_secs = t.elapsed().as_secs_f64();
    let rss1 = rss_bytes();
    assert_eq!(listed, files, "every file listed");
    let disk = std::fs::metadata(meta.path().join(cistern_master::store::STORE_FILE)).unwrap().len();
    println!("{files} files in {dirs} directories listed into the store in {list_secs:.1}s ({:.0} files/s)", files as f64 / list_secs);
    println!("on disk: {:.0} bytes per file ({} MiB store)", disk as f64 / files as f64, disk >> 20);
    println!(
        "RAM: {:.0} bytes per file (process RSS grew {} MiB while listing; the store keeps no per-file state in memory beyond redb's page cache)",
        rss1.saturating_sub(rss0) as f64 / files as f64,
        rss1.saturating_sub(rss0) >> 20
    );

    // Reopen with the UFS unreachable: every answer comes from the store.
    let gone = Ufs::unavailable("memory://bench", "the UFS is stopped for this measurement");
    let ns = Arc::new(Namespace::open(meta.path(), mounts(gone), None).unwrap());
    let n = sample.len();
    let t = Instant::now();
    for (_, _, ino) in &sample {
        ns.getattr(*ino).unwrap();
    }
    let getattr_1 = n as f64 / t.elapsed().as_secs_f64();
    let t = Instant::now();
    rt.block_on(async {
        for (dir, name, _) in &sample {
            ns.lookup(*dir, name).await.unwrap();
        }
    });
    let lookup_1 = n as f64 / t.elapsed().as_secs_f64();
    let t = Instant::now();
    let threads: Vec<_> = (0..2)
        .map(|k| {
            let (ns, sample) = (ns.clone(), sample.clone());
            std::thread::spawn(move || {
                for (_, _, ino) in sample.iter().skip(k).step_by(2) {
                    ns.getattr(*ino).unwrap();
                }
            })
        })
        .collect();
    threads.into_iter().for_each(|t| t.join().unwrap());
    let getattr_2 = n as f64 / t.elapsed().as_secs_f64();
    println!("stat (getattr) on the reopened store: {getattr_1:.0}/s on 1 thread, {getattr_2:.0}/s on 2 threads; lookup by name: {lookup_1:.0}/s ({n} random files)");
    println!("references: JuiceFS ~300 bytes/file in its metadata engine, Curvine ~130 bytes/file in RAM");
}
