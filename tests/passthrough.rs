//! FUSE passthrough of fully cached files, with real processes and a real mount: once a file
//! is wholly in the cache, an open hands the cache file to the kernel and reads never reach
//! the daemon or the worker (the worker's served-bytes counter stays still), across daemon
//! SIGKILLs, while a file already open normally keeps being read normally (the kernel refuses
//! to mix the two modes on one inode).

mod support;

use std::os::unix::fs::FileExt;
use support::*;

const MIB: usize = 1 << 20;

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| ((i * 31 + seed as usize) % 251) as u8).collect()
}

/// Bytes the workers served to readers (from cache or UFS): reads the daemon handled.
fn served(base: &str) -> u64 {
    let text = http("GET", &format!("{base}/metrics")).1;
    ["local", "ufs", "remote"]
        .iter()
        .map(|s| metric(&text, &format!("cistern_read_bytes_total{{dataset_namespace=\"default\",dataset=\"pt\",source=\"{s}\"}}")).unwrap_or(0))
        .sum()
}

#[test]
fn cached_files_are_read_by_the_kernel_and_modes_never_mix() {
    let s = Scratch::new();
    let data = s.path("data");
    let (a, b) = (pattern(24 * MIB, 1), pattern(6 * MIB + 123, 2));
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("a.bin"), &a).unwrap();
    std::fs::write(data.join("b.bin"), &b).unwrap();
    let shm = tempfile::Builder::new().prefix("cistern-pt-").tempdir_in("/dev/shm").unwrap();
    let yaml = dataset_yaml("pt", &format!("local://{}", data.display()), "", shm.path(), "256Mi", 1);
    let file = s.write("pt.yaml", &yaml);
    let up = Up::start(&s, &file, &[], "default", "pt");
    let base = Up::web_url(&s, "default", "pt");
    let (ma, mb) = (up.mountpoint.join("a.bin"), up.mountpoint.join("b.bin"));

    // b: opened while cold, so its inode is in normal (cached) mode; reading it all caches it.
    let normal = std::fs::File::open(&mb).unwrap();
    let mut head = vec![0u8; 4096];
    normal.read_exact_at(&mut head, 0).unwrap();
    assert_eq!(read_all(&mb), b, "b through the daemon");
    // Now complete in the cache, but a normal open is still there: a second open must not
    // ask for passthrough (the kernel would fail it with EIO) and reads the right bytes.
    assert_eq!(read_all(&mb), b, "b opened again while a normal open is held");
    drop(normal);
    // The kernel sends RELEASE in the background after close(2): give it a moment to arrive.
    std::thread::sleep(std::time::Duration::from_millis(300));

    // Every open of b closed: the next one is passthrough, and the daemon sees no read.
    tree::drop_page_cache(&up.mountpoint);
    let before = served(&base);
    assert_eq!(read_all(&mb), b, "b through passthrough");
    assert_eq!(served(&base), before, "a fully cached file was read through the daemon, not passthrough");

    // a: cached by one pass, then held open in passthrough mode across daemon SIGKILLs. New
    // opens of the same inode must reuse the backing file the kernel holds (a second one
    // fails with EIO), which only the open-file table kept by the supervisor remembers.
    assert_eq!(read_all(&ma), a, "a, cold");
    let held = std::fs::File::open(&ma).unwrap();
    let before = served(&base);
    for round in 0..5 {
        up.kill9_component("fuse");
        let mut chunk = vec![0u8; MIB];
        let off = (round * 3 + 1) * MIB;
        held.read_exact_at(&mut chunk, off as u64).unwrap();
        assert!(chunk == a[off..off + MIB], "round {round}: wrong bytes through the held descriptor");
        tree::drop_page_cache(&up.mountpoint);
        assert_eq!(read_all(&ma), a, "round {round}: a opened anew after the daemon was killed");
    }
    assert_eq!(served(&base), before, "reads of a fully cached file reached the worker");
    drop(held);
    assert_eq!(read_all(&mb), b, "b after the kills");
    let log = up.stderr();
    assert!(log.contains("passthrough=true"), "the supervisor did not negotiate passthrough:\n{log}");
}
