//! `cistern up` runs the master, the workers and the FUSE client as separate processes that
//! talk gRPC over Unix sockets, and supervises them like a StatefulSet would: each one's PID is
//! in the run directory, one that is SIGKILLed is started again and the Dataset stays readable,
//! and none outlives `up`.

mod support;

use std::os::unix::fs::FileTypeExt;
use std::path::Path;
use support::*;

fn cmdline(pid: u32) -> Vec<String> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    raw.split(|b| *b == 0).map(|s| String::from_utf8_lossy(s).into_owned()).collect()
}

fn parent_of(pid: u32) -> u32 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // pid (comm) state ppid ...: comm may hold spaces, so split after its closing parenthesis.
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    after.split(' ').nth(1).unwrap().parse().unwrap()
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// The children of `up`, and the subcommand each runs. The FUSE daemon (`fuse.pid`) is the
/// child of the FUSE supervisor.
const COMPONENTS: [(&str, &str); 4] = [("master", "master"), ("worker-0", "worker"), ("worker-1", "worker"), ("fuse-supervisor", "fuse")];

#[test]
fn components_are_supervised_processes_that_come_back_after_sigkill() {
    let s = Scratch::new();
    let ufs = s.path("ufs");
    let files = tree::layout(300, 8 << 20);
    tree::write_local(&ufs, &files);
    // SSD: a persistent level, so a restarted worker has its cache back (MEM would not).
    let spec = format!(
        "  replicas: 2\n  tieredstore:\n    levels:\n      - mediumtype: SSD\n        path: {}\n        quota: 1Gi\n",
        s.path("ssd").display()
    );
    let yaml = dataset_with_runtime("c", &format!("local://{}", ufs.display()), "", "AlluxioRuntime", &spec);
    let file = s.write("c.yaml", &yaml);
    let mut up = Up::start(&s, &file, &[], "default", "c");
    let up_pid = up.child.as_ref().unwrap().id();

    // Each component is a child of `up` running `cistern <component>`, with its socket.
    for (name, sub) in COMPONENTS {
        let pid = up.pid(name);
        assert_eq!(cmdline(pid).get(1).map(String::as_str), Some(sub), "{name}: {:?}", cmdline(pid));
        assert_eq!(parent_of(pid), up_pid, "{name} is not a child of up");
    }
    let daemon = up.pid("fuse");
    assert_eq!(parent_of(daemon), up.pid("fuse-supervisor"));
    assert!(cmdline(daemon).iter().any(|a| a == "--daemon"), "{:?}", cmdline(daemon));
    for sock in ["master.sock", "worker-0.sock", "worker-1.sock"] {
        let meta = std::fs::metadata(up.run_dir.join(sock)).unwrap_or_else(|e| panic!("{sock}: {e}"));
        assert!(meta.file_type().is_socket(), "{sock} is not a socket");
    }
    // Every byte goes through the master (metadata) and the workers (data) over gRPC.
    tree::assert_mount_matches(&up.mountpoint, &files);
    let ready = eventually(10, "both workers ready", || {
        let v: serde_json::Value = serde_json::from_slice(&s.cistern(&["get", "runtime", "-o", "json"]).stdout).ok()?;
        (v["status"]["workerNumberReady"] == 2).then_some(v)
    });
    assert_eq!(ready["status"]["workerPhase"], "Ready");

    // Workers killed: restarted (new PIDs), they re-index their SSD cache, and with the UFS
    // gone every byte is still served.
    let w0 = up.kill9_component("worker-0");
    let w1 = up.kill9_component("worker-1");
    assert_eq!(parent_of(w0), up_pid);
    assert_eq!(parent_of(w1), up_pid);
    std::fs::rename(&ufs, s.path("ufs-gone")).unwrap();
    tree::drop_page_cache(&up.mountpoint);
    tree::assert_mount_matches(&up.mountpoint, &files);

    // The FUSE daemon killed: a new one adopts the mount (tests/fuse_takeover.rs goes further).
    up.kill9_component("fuse");
    tree::assert_mount_matches(&up.mountpoint, &files);
    // The FUSE supervisor itself killed (its daemon dies with it): `up` starts a new one, which
    // takes the dead mount down and mounts again at the same path.
    up.kill9_component("fuse-supervisor");
    eventually(30, "a live mount again", || std::fs::read_dir(&up.mountpoint).ok());
    tree::assert_mount_matches(&up.mountpoint, &files);
    assert!(up.stderr().contains("warning: fuse-supervisor died"), "{}", up.stderr());

    // SIGTERM stops every component and removes the PID files.
    let mut pids: Vec<u32> = COMPONENTS.iter().map(|(n, _)| up.pid(n)).collect();
    pids.push(up.pid("fuse"));
    assert!(up.terminate().success(), "{}", up.stderr());
    for pid in &pids {
        assert!(!alive(*pid), "pid {pid} outlived up");
    }
    assert!(!up.run_dir.join("master.pid").exists());
    assert!(!is_mounted(&up.mountpoint));

    // `up` itself SIGKILLed: no component is left behind holding the store or the cache.
    std::fs::rename(s.path("ufs-gone"), &ufs).unwrap();
    let mut up = Up::start(&s, &file, &[], "default", "c");
    let mut pids: Vec<u32> = COMPONENTS.iter().map(|(n, _)| up.pid(n)).collect();
    pids.push(up.pid("fuse"));
    up.kill9();
    for pid in pids {
        eventually(10, "components gone with up", || (!alive(pid)).then_some(()));
    }
}
