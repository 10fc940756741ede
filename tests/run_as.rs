//! `runAs` on one machine, with real processes: `cistern up` (root) hands the directories over
//! and runs the master and workers as the runtime's user, the FUSE daemon stays root and still
//! takes cache files from a worker of another user through its descriptor socket (short-circuit
//! reads and passthrough), and every byte is right.

mod support;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use support::*;

const NOBODY: u32 = 65534;

/// The real uid of a process (`Uid:` in /proc/PID/status).
fn uid_of(pid: u32) -> u32 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn open_to_all(path: &std::path::Path) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn master_and_workers_run_as_the_user_and_reads_stay_short_circuit() {
    let s = Scratch::new();
    // Only the directories up hands over become the user's: the way there must be open.
    open_to_all(&s.path(""));
    std::fs::create_dir_all(s.run_root()).unwrap();
    open_to_all(&s.run_root());
    let ufs = s.path("ufs");
    let files = tree::layout(40, 24 << 20);
    tree::write_local(&ufs, &files);
    for entry in walk(&ufs) {
        let mode = if entry.is_dir() { 0o755 } else { 0o644 };
        std::fs::set_permissions(&entry, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    let shm = tempfile::Builder::new().prefix("cistern-runas-").tempdir_in("/dev/shm").unwrap();
    open_to_all(shm.path());
    let yaml = dataset_yaml("ra", &format!("local://{}", ufs.display()), "", shm.path(), "256Mi", 1)
        .replace("  replicas: 1\n", &format!("  replicas: 1\n  runAs: {{uid: {NOBODY}, gid: {NOBODY}, user: nobody, group: nogroup}}\n"));
    let file = s.write("ra.yaml", &yaml);
    let up = Up::start(&s, &file, &[], "default", "ra");
    assert!(!up.stderr().contains("spec.runAs"), "runAs is applied, not warned:\n{}", up.stderr());
    assert_eq!(uid_of(up.pid("master")), NOBODY);
    assert_eq!(uid_of(up.pid("worker-0")), NOBODY);
    assert_eq!(uid_of(up.pid("fuse-supervisor")), 0, "the FUSE side mounts, as root");

    tree::assert_mount_matches(&up.mountpoint, &files);
    // The cache is the user's: files the worker wrote, under the Dataset's own directory.
    let own = shm.path().join("cistern").join("default-ra");
    let cached: Vec<_> = walk(&own).into_iter().filter(|p| p.is_file()).collect();
    assert!(!cached.is_empty(), "nothing cached under {}", own.display());
    assert!(cached.iter().all(|p| std::fs::metadata(p).unwrap().uid() == NOBODY), "{cached:?}");

    // Wholly cached now: every open hands the kernel the worker's cache file, a descriptor the
    // user's worker passes to the root FUSE daemon over its socket (passthrough), so the worker
    // serves no byte. Were the worker not trusted, each read would go through its RPC.
    let base = Up::web_url(&s, "default", "ra");
    let served = || {
        let text = http("GET", &format!("{base}/metrics")).1;
        ["local", "ufs", "remote"]
            .iter()
            .map(|src| metric(&text, &format!("cistern_read_bytes_total{{dataset_namespace=\"default\",dataset=\"ra\",source=\"{src}\"}}")).unwrap_or(0))
            .sum::<u64>()
    };
    let before = eventually(20, "the first pass counted", || Some(served()).filter(|b| *b > 0));
    for rel in files.keys() {
        // Out of the page cache, so that the reads below reach the file system again.
        let f = std::fs::File::open(up.mountpoint.join(rel)).unwrap();
        // SAFETY: a valid descriptor; advice only.
        unsafe { libc::posix_fadvise(std::os::fd::AsRawFd::as_raw_fd(&f), 0, 0, libc::POSIX_FADV_DONTNEED) };
    }
    tree::assert_mount_matches(&up.mountpoint, &files);
    std::thread::sleep(std::time::Duration::from_millis(1500));
    assert_eq!(served(), before, "cached files were read through the worker, not from its descriptors");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        }
        out.push(p);
    }
    out
}
