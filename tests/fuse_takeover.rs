//! The FUSE daemon SIGKILLed again and again, and hot-upgraded, under a busy reader: its
//! supervisor keeps the mount and a new daemon adopts the same `/dev/fuse` connection, so the
//! reader (descriptors opened before the first crash, directory listings, stats, lookups of
//! missing names, uncached reads) and a shell whose current directory is inside the mount see
//! no error at all and every byte is right. The longest stall is printed.

mod support;

use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::*;

/// The mount's ID in mountinfo: it changes if the mount is ever replaced.
fn mount_id(path: &Path) -> Option<String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines().rev().find(|l| l.split(' ').nth(4) == path.to_str()).and_then(|l| l.split(' ').next().map(str::to_string))
}

struct Reader {
    stop: Arc<AtomicBool>,
    handle: std::thread::JoinHandle<(u64, Vec<String>, Duration)>,
}

/// Loops every couple of milliseconds until stopped; returns (iterations, errors, longest
/// iteration).
fn start_reader(mnt: PathBuf, files: &std::collections::BTreeMap<String, Vec<u8>>) -> Reader {
    let big = files["big/large.bin"].clone();
    let small: Vec<(String, Vec<u8>)> = files.iter().filter(|(k, _)| k.starts_with("d1/sub1/")).map(|(k, v)| (k.clone(), v.clone())).take(3).collect();
    let listing = files.keys().filter(|k| k.starts_with("d2/sub2/")).count();
    // Opened before the first crash, used throughout.
    let big_fd = std::fs::File::open(mnt.join("big/large.bin")).unwrap();
    let small_fds: Vec<std::fs::File> = small.iter().map(|(k, _)| std::fs::File::open(mnt.join(k)).unwrap()).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let handle = std::thread::spawn(move || {
        let (mut n, mut errors, mut longest) = (0u64, Vec::new(), Duration::ZERO);
        let mut seed = 0x2545F4914F6CDD1Du64;
        while !flag.load(Ordering::Relaxed) {
            let started = Instant::now();
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let mut check = |what: String, ok: bool| {
                if !ok && errors.len() < 20 {
                    errors.push(what);
                }
            };
            match std::fs::read_dir(mnt.join("d2/sub2")) {
                Ok(rd) => {
                    let count = rd.filter(|e| e.is_ok()).count();
                    check(format!("listing has {count} entries, not {listing}"), count == listing);
                }
                Err(e) => check(format!("ls: {e}"), false),
            }
            for (k, v) in &small {
                match std::fs::metadata(mnt.join(k)) {
                    Ok(m) => check(format!("{k}: size {}", m.len()), m.len() == v.len() as u64),
                    Err(e) => check(format!("stat {k}: {e}"), false),
                }
            }
            match std::fs::metadata(mnt.join("d0/no-such-file")) {
                Err(e) => check(format!("missing name: {e}"), e.kind() == std::io::ErrorKind::NotFound),
                Ok(_) => check("a missing name exists".into(), false),
            }
            // An uncached range: the page cache is dropped first, so the read reaches FUSE.
            let off = (seed % (big.len() as u64 - 65536)) & !4095;
            // SAFETY: fadvise on an open descriptor.
            unsafe { libc::posix_fadvise(big_fd.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
            let mut buf = vec![0u8; 65536];
            match big_fd.read_exact_at(&mut buf, off) {
                Ok(()) => check(format!("wrong bytes at {off}"), buf[..] == big[off as usize..off as usize + 65536]),
                Err(e) => check(format!("read at {off}: {e}"), false),
            }
            let i = (n as usize) % small.len();
            let mut got = vec![0u8; small[i].1.len()];
            // SAFETY: as above.
            unsafe { libc::posix_fadvise(small_fds[i].as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
            match small_fds[i].read_exact_at(&mut got, 0) {
                Ok(()) => check(format!("{}: wrong bytes", small[i].0), got == small[i].1),
                Err(e) => check(format!("read {}: {e}", small[i].0), false),
            }
            longest = longest.max(started.elapsed());
            n += 1;
            std::thread::sleep(Duration::from_millis(2));
        }
        (n, errors, longest)
    });
    Reader { stop, handle }
}

impl Reader {
    fn finish(self) -> (u64, Vec<String>, Duration) {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().expect("the reader panicked")
    }
}

/// A shell inside the mount: its current directory must keep working.
fn shell_in(dir: &Path) -> std::process::Child {
    std::process::Command::new("sh")
        .current_dir(dir)
        .arg("-c")
        .arg("i=0; while [ $i -lt 400 ]; do ls . >/dev/null || exit 1; cat sub0/file-00000.bin >/dev/null || exit 2; i=$((i+1)); sleep 0.01; done")
        .spawn()
        .unwrap()
}

fn dataset(s: &Scratch) -> (PathBuf, std::collections::BTreeMap<String, Vec<u8>>) {
    let ufs = s.path("ufs");
    let files = tree::layout(200, 24 << 20);
    tree::write_local(&ufs, &files);
    let spec = format!(
        "  replicas: 1\n  tieredstore:\n    levels:\n      - mediumtype: SSD\n        path: {}\n        quota: 1Gi\n",
        s.path("ssd").display()
    );
    let yaml = dataset_with_runtime("t", &format!("local://{}", ufs.display()), "", "AlluxioRuntime", &spec);
    (s.write("t.yaml", &yaml), files)
}

#[test]
fn twenty_sigkills_of_the_fuse_daemon_cause_no_error() {
    let s = Scratch::new();
    let (file, files) = dataset(&s);
    let up = Up::start(&s, &file, &[], "default", "t");
    let mnt = up.mountpoint.clone();
    let id = mount_id(&mnt).unwrap();
    let supervisor = up.pid("fuse-supervisor");
    let reader = start_reader(mnt.clone(), &files);
    let mut shell = shell_in(&mnt.join("d0"));
    let mut daemons = vec![up.pid("fuse")];
    for _ in 0..20 {
        std::thread::sleep(Duration::from_millis(120));
        daemons.push(up.kill9_component("fuse"));
    }
    std::thread::sleep(Duration::from_millis(200));
    let (n, errors, longest) = reader.finish();
    println!("takeover: 20 SIGKILLs, {n} reader iterations, longest stall {longest:?}");
    assert!(errors.is_empty(), "the reader saw errors: {errors:#?}");
    assert!(n > 20, "the reader barely ran ({n} iterations)");
    assert!(shell.wait().unwrap().success(), "the shell inside the mount failed");
    assert_eq!(mount_id(&mnt).unwrap(), id, "the mount was replaced instead of adopted");
    assert_eq!(up.pid("fuse-supervisor"), supervisor);
    daemons.dedup();
    assert_eq!(daemons.len(), 21, "each kill started a new daemon: {daemons:?}");
    tree::drop_page_cache(&mnt);
    tree::assert_mount_matches(&mnt, &files);
}

#[test]
fn a_hot_upgrade_of_the_fuse_daemon_loses_nothing() {
    let s = Scratch::new();
    let (file, files) = dataset(&s);
    let mut up = Up::start(&s, &file, &[], "default", "t");
    let mnt = up.mountpoint.clone();
    let id = mount_id(&mnt).unwrap();
    let reader = start_reader(mnt.clone(), &files);
    let before = up.pid("fuse");
    for _ in 0..3 {
        std::thread::sleep(Duration::from_millis(150));
        let out = s.cistern(&["fuse", "--upgrade", "-f", file.to_str().unwrap(), "--run-dir", up.run_dir.to_str().unwrap()]);
        assert!(out.status.success(), "{}", stderr_of(&out));
        assert!(stdout_of(&out).contains("FUSE daemon replaced"), "{}", stdout_of(&out));
    }
    std::thread::sleep(Duration::from_millis(200));
    let (n, errors, longest) = reader.finish();
    println!("hot upgrade: 3 upgrades, {n} reader iterations, longest stall {longest:?}");
    assert!(errors.is_empty(), "the reader saw errors: {errors:#?}");
    assert_ne!(up.pid("fuse"), before);
    assert_eq!(mount_id(&mnt).unwrap(), id);
    assert!(up.stderr().contains("replaced (upgrade)"), "{}", up.stderr());
    // Stopping still unmounts cleanly.
    assert!(up.terminate().success(), "{}", up.stderr());
    assert!(!is_mounted(&mnt));
}
