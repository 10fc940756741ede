//! The fallback for kernels that cannot hand a live FUSE connection to a new daemon
//! (`up --fuse-standalone`): when the one FUSE process dies, `up` starts it again and it takes
//! the dead mount down and mounts again at the same path, as Fluid's FuseRecovery does.
//! Measured here: the gap until the mount point answers again. Unlike the supervised default,
//! descriptors opened before the crash are dead (the test checks they fail, not hang).

mod support;

use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};
use support::*;

#[test]
fn a_killed_standalone_fuse_is_remounted_at_the_same_path() {
    let s = Scratch::new();
    let data = s.path("data");
    std::fs::create_dir_all(&data).unwrap();
    let content = tree::bytes(7, 3 << 20);
    std::fs::write(data.join("f.bin"), &content).unwrap();
    let tier = s.path("mem");
    let yaml = dataset_yaml("fallback", &format!("local://{}", data.display()), "", &tier, "64Mi", 1);
    let file = s.write("fallback.yaml", &yaml);
    let up = Up::start(&s, &file, &["--fuse-standalone"], "default", "fallback");
    assert!(!up.run_dir.join("fuse-supervisor.pid").exists(), "a supervisor runs in standalone mode");
    let target = up.mountpoint.join("f.bin");
    assert_eq!(std::fs::read(&target).unwrap(), content);
    let old_fd = std::fs::File::open(&target).unwrap();

    let mut gaps = Vec::new();
    for round in 0..3 {
        let old = up.pid("fuse");
        // SAFETY: kill(2) of a process `up` started for this test.
        assert_eq!(unsafe { libc::kill(old as i32, libc::SIGKILL) }, 0);
        let killed = Instant::now();
        let gap = eventually(30, "the mount answering again", || {
            let back = up.pid("fuse") != old && std::fs::read_dir(&up.mountpoint).is_ok();
            back.then(|| killed.elapsed())
        });
        assert_eq!(std::fs::read(&target).unwrap(), content, "round {round}: wrong bytes after the remount");
        gaps.push(gap);
        // Stay up long enough that the next death is restarted at once, not after a backoff.
        std::thread::sleep(Duration::from_secs(if round < 2 { 11 } else { 0 }));
    }
    // The descriptor from before the first crash belongs to the dead connection: past its
    // page cache, it fails.
    use std::os::fd::AsRawFd;
    // SAFETY: fadvise on an open descriptor; no memory is passed.
    unsafe { libc::posix_fadvise(old_fd.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    let mut buf = [0u8; 16];
    let err = old_fd.read_exact_at(&mut buf, 0).expect_err("a descriptor of the dead mount still reads");
    assert!(matches!(err.raw_os_error(), Some(libc::ENOTCONN) | Some(libc::EIO)), "{err}");
    println!("standalone FUSE remount gap after SIGKILL: {gaps:?} (first restart has a 100 ms backoff)");
}
