//! Eviction churn: a worker with a small MEM level over an SSD level reads large files whole,
//! one after another, so every file becomes complete in MEM and is then evicted whole and
//! demoted to SSD. Prints the process's peak RSS (VmHWM) against the bytes it moved: eviction
//! of a complete file must not copy the file into memory (it is demoted a run at a time,
//! outside the tier's locks).
//!
//! `cargo bench -p cistern-worker --bench eviction_churn` (about 20 s).

use cistern_ufs::Ufs;
use cistern_worker::{FileRef, LevelSpec, ReadOptions, Worker, BLOCK_SIZE};
use std::time::Instant;

fn vm_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status.lines().find(|l| l.starts_with(field)).and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse().ok()).unwrap_or(0)
}

fn main() {
    const FILE: usize = 96 << 20;
    const FILES: usize = 8;
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ufs_dir = dir.path().join("ufs");
    std::fs::create_dir_all(&ufs_dir).unwrap();
    for i in 0..FILES {
        // Written a MiB at a time: the set-up must not raise the peak it measures.
        let mut out = std::io::BufWriter::new(std::fs::File::create(ufs_dir.join(format!("f{i}.bin"))).unwrap());
        for m in 0..FILE >> 20 {
            let piece: Vec<u8> = (0..1usize << 20).map(|j| (((m << 20) + j) * 31 % 251) as u8 ^ i as u8).collect();
            std::io::Write::write_all(&mut out, &piece).unwrap();
        }
    }
    let op = opendal::Operator::new(opendal::services::Fs::default().root(ufs_dir.to_str().unwrap())).unwrap();
    let ufs = Ufs::from_operator(op, "local://churn");
    // MEM (a directory standing for it) holds a bit more than one file; SSD holds them all.
    let levels = [
        LevelSpec::single("MEM", &dir.path().join("mem"), FILE as u64 + 4 * BLOCK_SIZE, 0.95, 0.5),
        LevelSpec::single("SSD", &dir.path().join("ssd"), (FILES * FILE) as u64 * 2, 0.95, 0.7),
    ];
    let worker = Worker::open(0, &levels, ReadOptions::default()).unwrap();
    // Resets the peak (VmHWM) to the current RSS: what follows is the churn's own.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let before = vm_kib("VmRSS:");
    let started = Instant::now();
    for round in 0..2 {
        for i in 0..FILES {
            let f = FileRef {
                ufs: ufs.clone(),
                path: format!("f{i}.bin"),
                size: FILE as u64,
                key: cistern_rpc::CacheKey::for_test(&format!("f{i}")),
                etag: None,
                mtime: None,
                signed: None,
            };
            for off in (0..FILE as u64).step_by(4 << 20) {
                let got = rt.block_on(worker.read(&f, off, 4 << 20)).unwrap();
                assert_eq!(got.len(), 4 << 20, "round {round} file {i}");
            }
        }
    }
    let elapsed = started.elapsed();
    let stats = worker.cache().stats();
    let demoted: u64 = stats.iter().map(|l| l.demoted_bytes).sum();
    let peak = vm_kib("VmHWM:");
    println!("eviction churn: {} files of {} MiB read twice through a {} MiB MEM level in {:.1} s", FILES, FILE >> 20, (FILE as u64 + 4 * BLOCK_SIZE) >> 20, elapsed.as_secs_f64());
    println!("  demoted to SSD:          {} MiB", demoted >> 20);
    println!("  RSS before:              {} MiB", before >> 10);
    println!("  peak RSS during churn:   {} MiB", peak >> 10);
    println!("  peak growth / file size: {:.2} (1.00 would be a whole file in memory)", (peak.saturating_sub(before) << 10) as f64 / FILE as f64);
}
