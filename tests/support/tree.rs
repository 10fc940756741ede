//! Test data trees, and the byte-for-byte comparison of a mount against its source.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

/// A deterministic pseudo-random byte stream (xorshift), so data is incompressible and
/// every file differs.
pub fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E3779B97F4A7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// The files of a test dataset: relative path → content. Nested directories, `files` small
/// files, an empty file, names with spaces and non-ASCII, and one large file of `big` bytes.
pub fn layout(files: usize, big: usize) -> BTreeMap<String, Vec<u8>> {
    let mut t = BTreeMap::new();
    for i in 0..files {
        let dir = format!("d{}/sub{}", i % 10, i % 3);
        t.insert(format!("{dir}/file-{i:05}.bin"), bytes(i as u64 + 1, 100 + (i * 37) % 5000));
    }
    t.insert("empty".into(), vec![]);
    t.insert("name with spaces.txt".into(), b"spaces are fine\n".to_vec());
    t.insert("données/日本語 ファイル.txt".into(), "non-ASCII names\n".as_bytes().to_vec());
    t.insert("deep/a/b/c/d/e/leaf.txt".into(), b"deep\n".to_vec());
    if big > 0 {
        t.insert("big/large.bin".into(), bytes(424242, big));
    }
    t
}

pub fn write_local(root: &Path, files: &BTreeMap<String, Vec<u8>>) {
    for (rel, data) in files {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, data).unwrap();
    }
}

/// Calls `f(relative path, path, metadata)` for every entry under `root`, directories included.
pub fn visit(root: &Path, mut f: impl FnMut(String, &Path, &std::fs::Metadata)) {
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let e = e.unwrap();
            let meta = e.metadata().unwrap();
            if meta.is_dir() {
                stack.push(e.path());
            }
            let rel = e.path().strip_prefix(root).unwrap().to_string_lossy().into_owned();
            f(rel, &e.path(), &meta);
        }
    }
}

/// Every regular file under `root`, as relative path → size.
pub fn walk(root: &Path) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    visit(root, |rel, _, meta| {
        if !meta.is_dir() {
            out.insert(rel, meta.len());
        }
    });
    out
}

/// Every path under `root` with its kind, size and mtime (seconds, nanoseconds).
pub fn snapshot(root: &Path) -> BTreeMap<String, (bool, u64, i64, i64)> {
    use std::os::unix::fs::MetadataExt;
    let mut out = BTreeMap::new();
    visit(root, |rel, _, m| {
        out.insert(rel, (m.is_dir(), if m.is_dir() { 0 } else { m.len() }, m.mtime(), m.mtime_nsec()));
    });
    out
}

/// Reads every expected file through the mount and compares names, sizes and bytes.
pub fn assert_mount_matches(mount: &Path, expected: &BTreeMap<String, Vec<u8>>) {
    let seen = walk(mount);
    let want: BTreeMap<String, u64> = expected.iter().map(|(k, v)| (k.clone(), v.len() as u64)).collect();
    assert_eq!(seen.len(), want.len(), "file count differs");
    assert_eq!(seen, want, "names or sizes differ");
    for (rel, data) in expected {
        let mut f = std::fs::File::open(mount.join(rel)).unwrap();
        let mut got = Vec::with_capacity(data.len());
        f.read_to_end(&mut got).unwrap();
        assert!(got == *data, "{rel}: content differs ({} vs {} bytes)", got.len(), data.len());
    }
}

/// Drops the kernel's page cache of every file under `root`, so the next read reaches the
/// FUSE daemon instead of being served by the kernel.
pub fn drop_page_cache(root: &Path) {
    use std::os::unix::io::AsRawFd;
    visit(root, |_, path, meta| {
        if let (false, Ok(f)) = (meta.is_dir(), std::fs::File::open(path)) {
            // SAFETY: fadvise on an open descriptor; no memory is passed.
            unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
        }
    });
}

/// The largest file under `dir` (a cache file, in benches); empty when there is none.
#[allow(dead_code)]
pub fn largest_file(dir: &Path) -> PathBuf {
    let mut best = (0, PathBuf::new());
    let Ok(entries) = std::fs::read_dir(dir) else { return best.1 };
    for e in entries.flatten() {
        let p = e.path();
        let (len, p) = if p.is_dir() {
            let sub = largest_file(&p);
            (std::fs::metadata(&sub).map(|m| m.len()).unwrap_or(0), sub)
        } else {
            (std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0), p)
        };
        if len > best.0 {
            best = (len, p);
        }
    }
    best.1
}

/// Reads `path` from start to end in 1 MiB reads, checks it had `expect` bytes; MiB/s.
#[allow(dead_code)]
pub fn sequential_read_mib_s(path: &Path, expect: u64) -> f64 {
    let mut f = std::fs::File::open(path).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    let t = std::time::Instant::now();
    let mut n = 0u64;
    loop {
        let r = f.read(&mut buf).unwrap();
        if r == 0 {
            break;
        }
        n += r as u64;
    }
    assert_eq!(n, expect, "{} read short", path.display());
    n as f64 / (1u64 << 20) as f64 / t.elapsed().as_secs_f64()
}
