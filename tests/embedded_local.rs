//! `cistern up` on a local directory tree, mounted for real through FUSE.

mod support;

use cistern_api::quantity::format_bytes;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use support::*;

#[test]
fn local_tree_is_served_byte_for_byte_and_stops_cleanly() {
    let s = Scratch::new();
    let ufs = s.path("ufs");
    let files = tree::layout(1010, 256 << 20);
    tree::write_local(&ufs, &files);
    let yaml = dataset_yaml("demo", &format!("local://{}", ufs.display()), "", &s.path("cache"), "1Gi", 2);
    let file = s.write("demo.yaml", &yaml);
    let mut up = Up::start(&s, &file, &[], "default", "demo");
    let mnt = up.mountpoint.clone();

    // What `up` printed: the mount path and the status table.
    let out = eventually(10, "the status table", || Some(up.stdout()).filter(|o| o.contains("PHASE")));
    assert!(out.contains(&format!("mounted at {}", mnt.display())), "{out}");
    assert!(out.contains("NAME   UFS TOTAL SIZE   CACHED"), "{out}");

    tree::assert_mount_matches(&mnt, &files);

    // Sizes, mtimes and modes look like the source's; directories are directories.
    for rel in ["empty", "name with spaces.txt", "données/日本語 ファイル.txt", "big/large.bin"] {
        let (a, b) = (std::fs::metadata(mnt.join(rel)).unwrap(), std::fs::metadata(ufs.join(rel)).unwrap());
        assert_eq!((a.len(), a.mtime()), (b.len(), b.mtime()), "{rel}");
        assert_eq!(a.permissions().mode(), 0o100644, "{rel}");
    }
    assert_eq!(std::fs::metadata(mnt.join("d1")).unwrap().permissions().mode(), 0o40755);

    // No extended attributes: the kernel answers EOPNOTSUPP itself (the daemon said ENOSYS once),
    // so `ls -l` does not pay two daemon round trips per entry.
    let path = std::ffi::CString::new(mnt.join("empty").into_os_string().into_encoded_bytes()).unwrap();
    for _ in 0..2 {
        // SAFETY: a valid C path and a null buffer of size 0 (a size query).
        let rc = unsafe { libc::getxattr(path.as_ptr(), c"user.x".as_ptr(), std::ptr::null_mut(), 0) };
        assert_eq!((rc, std::io::Error::last_os_error().raw_os_error()), (-1, Some(libc::EOPNOTSUPP)));
    }

    // Read-only: writes fail with EROFS, nothing reaches the UFS.
    let err = std::fs::write(mnt.join("new.txt"), b"x").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EROFS), "{err}");
    assert!(!ufs.join("new.txt").exists());

    // statfs reports the cache capacity: 2 workers x 1Gi.
    let st = statvfs(&mnt);
    assert_eq!(st.f_blocks * st.f_frsize, 2 << 30);

    // `get dataset` finds it with no flags once the UFS is counted.
    let total: u64 = files.values().map(|v| v.len() as u64).sum();
    let table = eventually(60, "UFS TOTAL SIZE in `get dataset`", || {
        let o = stdout_of(&s.cistern(&["get", "dataset"]));
        o.contains(&format_bytes(total)).then_some(o)
    });
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 2, "{table}");
    for col in ["NAME", "UFS TOTAL SIZE", "CACHED", "CACHE CAPACITY", "CACHED PERCENTAGE", "PHASE", "AGE"] {
        assert!(lines[0].contains(col), "missing {col}: {table}");
    }
    assert!(lines[1].starts_with("demo ") && lines[1].contains("Bound") && lines[1].contains("2.00GiB"), "{table}");

    // Everything was read once, so a second read is served from the cache.
    tree::assert_mount_matches(&mnt, &files);
    // The status is republished every second: wait for one written after the reads.
    let json: serde_json::Value = eventually(10, "everything cached in the status", || {
        let v: serde_json::Value = serde_json::from_slice(&s.cistern(&["get", "dataset", "demo", "-o", "json"]).stdout).ok()?;
        (v["status"]["cacheStates"]["cached"] == format_bytes(total).as_str()).then_some(v)
    });
    assert_ne!(json["status"]["cacheStates"]["cacheHitRatio"], "0.0%");
    assert_eq!(json["kind"], "Dataset");
    assert_eq!(json["status"]["phase"], "Bound");
    assert_eq!(json["status"]["fileNum"], files.len().to_string());
    assert_eq!(json["status"]["cacheStates"]["cacheCapacity"], "2.00GiB");
    assert_eq!(json["status"]["cacheStates"]["cached"], format_bytes(total));
    assert_eq!(json["status"]["cacheStates"]["cachedPercentage"], "100.0%");

    let wide = stdout_of(&s.cistern(&["get", "dataset", "-o", "wide"]));
    assert!(wide.contains("FILE NUM") && wide.contains("CACHE HIT RATIO") && wide.contains(&files.len().to_string()), "{wide}");
    let yaml_out = stdout_of(&s.cistern(&["get", "dataset", "-o", "yaml"]));
    assert!(yaml_out.contains("phase: Bound"), "{yaml_out}");
    let rt = stdout_of(&s.cistern(&["get", "runtime"]));
    assert!(rt.contains("MASTER PHASE") && rt.lines().nth(1).unwrap().split_whitespace().filter(|w| *w == "Ready").count() == 3, "{rt}");

    // SIGTERM: clean unmount, exit 0, nothing published any more, cache files removed.
    let status = up.terminate();
    assert!(status.success(), "exit {status}: {}", up.stderr());
    assert!(!is_mounted(&mnt), "still mounted after SIGTERM");
    assert!(up.stdout().contains("unmounted"), "{}", up.stdout());
    let o = s.cistern(&["get", "dataset"]);
    assert!(o.status.success() && stdout_of(&o).is_empty(), "{}", stdout_of(&o));
    assert!(stderr_of(&o).contains("No resources found"));
    assert!(!s.path("cache/cistern/default-demo").exists(), "cache left behind");
}

#[test]
fn several_mounts_appear_under_their_paths() {
    let s = Scratch::new();
    for (dir, text) in [("a", "from a\n"), ("b", "from b\n")] {
        std::fs::create_dir_all(s.path(dir)).unwrap();
        std::fs::write(s.path(dir).join("f.txt"), text).unwrap();
    }
    let yaml = format!(
        "apiVersion: data.fluid.io/v1alpha1
kind: Dataset
metadata:
  name: multi
  namespace: team
spec:
  mounts:
    - mountPoint: local://{a}
      name: first
    - mountPoint: file://{b}
      name: second
      path: /nested/second
---
apiVersion: data.fluid.io/v1alpha1
kind: AlluxioRuntime
metadata:
  name: multi
  namespace: team
spec:
  tieredstore:
    levels:
      - mediumtype: SSD
        path: {cache}
        quota: 64Mi
",
        a = s.path("a").display(),
        b = s.path("b").display(),
        cache = s.path("cache").display()
    );
    let file = s.write("multi.yaml", &yaml);
    let up = Up::start(&s, &file, &[], "team", "multi");
    assert_eq!(std::fs::read_to_string(up.mountpoint.join("first/f.txt")).unwrap(), "from a\n");
    assert_eq!(std::fs::read_to_string(up.mountpoint.join("nested/second/f.txt")).unwrap(), "from b\n");
    let mut top: Vec<String> =
        std::fs::read_dir(&up.mountpoint).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    top.sort();
    assert_eq!(top, ["first", "nested"]);
    let o = stdout_of(&s.cistern(&["get", "dataset", "-n", "team"]));
    assert!(o.contains("multi"), "{o}");
    let o = s.cistern(&["get", "dataset", "-n", "other"]);
    assert!(stdout_of(&o).is_empty());
}

fn statvfs(p: &std::path::Path) -> libc::statvfs {
    let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: statvfs fills the zeroed struct we own.
    unsafe {
        let mut st: libc::statvfs = std::mem::zeroed();
        assert_eq!(libc::statvfs(c.as_ptr(), &mut st), 0);
        st
    }
}

/// What an unprivileged user on the node (uid 65534) can get at: the Dataset through the mount
/// (`allow_other`), and nothing else: a link in the UFS that leads to a root-only file outside
/// the mount's root is not served, and the cache, run and metadata files are the worker's and
/// master's own (0700 directories, 0600 files).
#[test]
fn an_unprivileged_reader_gets_the_dataset_and_nothing_else() {
    use std::os::unix::process::CommandExt;
    let s = Scratch::new();
    // Traversable by others (a tempdir is 0700), so the mount can be reached at all.
    std::fs::set_permissions(s.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let ufs = s.path("ufs");
    std::fs::create_dir_all(&ufs).unwrap();
    std::fs::write(ufs.join("inside.txt"), b"dataset bytes").unwrap();
    let victim = s.path("root-only");
    std::fs::write(&victim, b"ROOT ONLY SECRET").unwrap();
    std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::os::unix::fs::symlink(&victim, ufs.join("escape")).unwrap();
    std::os::unix::fs::symlink(s.dir.path(), ufs.join("up")).unwrap();
    let yaml = dataset_yaml("priv", &format!("local://{}", ufs.display()), "", &s.path("cache"), "64Mi", 1);
    let file = s.write("priv.yaml", &yaml);
    let up = Up::start(&s, &file, &[], "default", "priv");
    let mnt = up.mountpoint.clone();
    let as_nobody = |args: &[&str]| std::process::Command::new(args[0]).args(&args[1..]).uid(65534).gid(65534).output().unwrap();

    let inside = mnt.join("inside.txt");
    let o = as_nobody(&["cat", inside.to_str().unwrap()]);
    assert!(o.status.success() && stdout_of(&o) == "dataset bytes", "{}", stderr_of(&o));
    let listing = as_nobody(&["ls", "-a", mnt.to_str().unwrap()]);
    assert!(!stdout_of(&listing).contains("escape") && !stdout_of(&listing).contains("up"), "{}", stdout_of(&listing));
    for rel in ["escape", "up/root-only"] {
        let o = as_nobody(&["cat", mnt.join(rel).to_str().unwrap()]);
        assert!(!o.status.success() && !stdout_of(&o).contains("ROOT ONLY"), "{rel} was served");
        // Not even root through the mount.
        assert!(std::fs::read(mnt.join(rel)).is_err(), "{rel} was served to root");
    }

    // The cache (now holding inside.txt), the run directory and the metadata: not for others.
    let tier = s.path("cache/cistern/default-priv/worker-0");
    assert!(std::fs::read_dir(&tier).unwrap().count() > 0, "nothing cached");
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&tier), 0o700);
    for e in std::fs::read_dir(&tier).unwrap().flatten() {
        assert_eq!(mode(&e.path()), 0o600, "{:?}", e.file_name());
    }
    assert_eq!(mode(&up.run_dir), 0o700);
    assert_eq!(mode(&up.run_dir.join("status.json")), 0o600);
    assert_eq!(mode(&up.run_dir.join("credentials")), 0o700);
    for sock in ["master.sock", "worker-0.sock", "worker-0.fd.sock"] {
        assert_eq!(mode(&up.run_dir.join(sock)), 0o600, "{sock}");
    }
    let meta = s.path("cache/cistern-meta/default-priv");
    assert_eq!(mode(&meta), 0o700);
    assert_eq!(mode(&meta.join("namespace.redb")), 0o600);
    assert!(!as_nobody(&["ls", tier.to_str().unwrap()]).status.success());
}
