//! The FUSE sidecar of a serverless pod (seed 001), as processes: the Dataset's master and a
//! worker on their own hosts (network namespaces), and on a third host the pod: the sidecar
//! started with exactly the command and arguments the webhook's patch gives it, as PID 1 of its
//! own PID namespace, in its own mount namespace with the volumes at the patch's paths (the
//! Service name of the master resolved by its /etc/hosts), sharing the pod's `emptyDir` with
//! Bidirectional propagation; and an "app" process in another mount namespace that receives the
//! Dataset by propagation and runs `ls -l` and reads in a loop. The seed's test: `kill 1` in the
//! sidecar, then SIGKILL of its FUSE daemon: zero errors in the app. A SIGTERM from outside (the
//! kubelet stopping the pod) ends the sidecar, so a Job's pod completes. And what a restart of
//! the whole sidecar container costs the app, measured. Allowance: 90 s (about 40 s here).

mod support;

use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::hosts::Proc;
use support::nodes::{Cistern, Lan};
use support::*;

/// The children of `pid` (all its threads').
fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).into_iter().flatten().flatten() {
        let text = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        out.extend(text.split_whitespace().filter_map(|p| p.parse::<u32>().ok()));
    }
    out
}

/// Directories the sidecar's paths need on the root file system (made for the test and
/// removed after it, when they were not there).
struct MadeDirs(Vec<PathBuf>);

impl MadeDirs {
    fn make(paths: &[&str]) -> MadeDirs {
        let mut made = Vec::new();
        for p in paths {
            let mut at = PathBuf::from("/");
            for part in Path::new(p).components().skip(1) {
                at.push(part);
                if !at.exists() {
                    std::fs::create_dir(&at).unwrap();
                    made.push(at.clone());
                }
            }
        }
        MadeDirs(made)
    }
}

impl Drop for MadeDirs {
    fn drop(&mut self) {
        for d in self.0.iter().rev() {
            let _ = std::fs::remove_dir(d);
        }
    }
}

#[test]
fn kill_1_in_the_sidecar_costs_the_app_nothing_and_a_sigterm_from_outside_ends_it() {
    let mut files = std::collections::BTreeMap::new();
    for i in 0..6u64 {
        files.insert(format!("part-{i}.bin"), tree::bytes(90 + i, (1 << 20) + 333 * i as usize));
    }
    let lan = Lan::up(&["wrk", "pod"], None);
    support::s3::upload_to(&lan.store, "side", &files);
    let c = Cistern::start(&lan, "side", "256Mi", "  replicas: 1\n", &["wrk"], &[]);

    // The sidecar as the webhook makes it, for a runtime whose master listens where this
    // test's does (the port annotation the operator keeps).
    let mut manifest = cistern_api::load::Manifest::from_path(&c.file).unwrap();
    let mut runtime = manifest.runtimes.remove(0);
    if let cistern_api::load::Runtime::Alluxio(r) = &mut runtime {
        r.metadata.annotations.get_or_insert_with(Default::default).insert(cistern_operator::host_ports::ANNOTATION.into(), "master=7000,web=7001,worker=7100".into());
    }
    let pod = json!({
        "metadata": {"labels": {"serverless.fluid.io/inject": "true"}},
        "spec": {
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "nodes"}}],
            "containers": [{"name": "app", "image": "app", "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
        },
    });
    let pod = serde_json::from_value(pod).unwrap();
    let ops = cistern_operator::sidecar::patch(&pod, "default", &[cistern_operator::sidecar::Target::own("nodes", runtime)], "cistern");
    let ops: Vec<serde_json::Value> = ops.into_iter().map(|o| serde_json::to_value(o).unwrap()).collect();
    let sidecar = ops.iter().find(|o| o["path"] == "/spec/initContainers/-").expect("a sidecar")["value"].clone();
    let mut argv: Vec<String> = serde_json::from_value(sidecar["command"].clone()).unwrap();
    argv.extend(serde_json::from_value::<Vec<String>>(sidecar["args"].clone()).unwrap());
    assert_eq!(argv[0], "cistern");
    let mount_of = |name: &str| sidecar["volumeMounts"].as_array().unwrap().iter().find(|m| m["name"] == name).unwrap()["mountPath"].as_str().unwrap().to_string();
    let (data_path, config_path, creds_path) = (mount_of("data"), mount_of("cistern-config-nodes"), mount_of("cistern-credentials-nodes"));
    let master = argv.iter().position(|a| a == "--master").map(|i| argv[i + 1].clone()).unwrap();
    let (service, _) = master.split_once(':').unwrap();
    let _dirs = MadeDirs::make(&[&data_path, &config_path, &creds_path, "/run/cistern"]);

    // The pod's volumes: the Dataset's configuration (its ConfigMap: the Dataset and runtime,
    // no Secret), the client credentials only, and the emptyDir, shared (Bidirectional).
    let s = &c.s;
    let config = s.path("pod/config");
    std::fs::create_dir_all(&config).unwrap();
    let yaml = std::fs::read_to_string(&c.file).unwrap();
    let without_secret = yaml.split_once("---\n").unwrap().1;
    std::fs::write(config.join("dataset.yaml"), without_secret).unwrap();
    let creds = s.path("pod/credentials");
    std::fs::create_dir_all(&creds).unwrap();
    for f in ["ca.pem", "client.pem", "client.key"] {
        std::fs::copy(s.path("run/srv/credentials").join(f), creds.join(f)).unwrap();
    }
    let hosts = s.write("pod/hosts", &format!("127.0.0.1 localhost\n{} {service}\n", lan.hosts.get("srv").ip));
    let volume = s.path("pod/data");
    std::fs::create_dir_all(&volume).unwrap();
    let sh = |script: &str| assert!(Command::new("sh").arg("-c").arg(script).status().unwrap().success(), "{script}");
    sh(&format!("mount --bind {v} {v} && mount --make-shared {v}", v = volume.display()));
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            // The volume, the dead mount a killed sidecar left on it, and what is over that.
            for _ in 0..8 {
                if !std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default().contains(&format!(" {} ", self.0.display())) {
                    break;
                }
                let _ = Command::new("umount").arg("-l").arg(&self.0).status();
            }
        }
    }
    let _volume = Unmount(volume.clone());

    // The sidecar: PID 1 of a new PID namespace, in a new mount namespace that starts as a
    // copy (so the emptyDir keeps its peer group), with its root made private before the
    // volumes are bound at the spec's paths.
    let quoted: Vec<String> = argv.iter().skip(1).map(|a| format!("'{a}'")).collect();
    let script = format!(
        "set -e; mount --make-private /; mount --bind {hosts} /etc/hosts; mount --bind {config} {config_path}; \
         mount --bind {creds} {creds_path}; mount -t tmpfs tmpfs /run/cistern; mount --rbind {volume} {data_path}; \
         exec {bin} {args}",
        hosts = hosts.display(),
        config = config.display(),
        creds = creds.display(),
        volume = volume.display(),
        bin = cistern_bin(),
        args = quoted.join(" "),
    );
    let start_sidecar = |log: &str| {
        let mut cmd = lan.hosts.get("pod").command(Path::new("unshare"));
        cmd.args(["--pid", "--fork", "--kill-child", "--mount", "--propagation", "unchanged", "--", "sh", "-c", &script]);
        cmd.env("CISTERN_LOG", "info").stdout(Stdio::null()).stderr(std::fs::File::create(s.path(log)).unwrap());
        Proc(cmd.spawn().unwrap())
    };
    let mut sidecar_proc = start_sidecar("sidecar.log");
    let unshare = sidecar_proc.pid();
    let pid1 = eventually(10, "the sidecar's PID 1", || {
        if let Ok(Some(status)) = sidecar_proc.0.try_wait() {
            panic!("the sidecar ended at start ({status}): {}", std::fs::read_to_string(s.path("sidecar.log")).unwrap_or_default());
        }
        children(unshare).first().copied()
    });
    // The volume is a mount point itself (the shared bind): wait for the FUSE mount over it.
    let fuse_on = |p: &Path| std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default().lines().any(|l| l.contains(&format!(" {} ", p.display())) && l.contains(" - fuse"));
    eventually(30, "the Dataset mounted in the pod's volume", || fuse_on(&volume).then_some(()));
    assert!(std::fs::read_to_string(format!("/proc/{pid1}/status")).unwrap().lines().any(|l| l.starts_with("NSpid:") && l.trim_end().ends_with("\t1")), "the sidecar is not PID 1 of its namespace");
    tree::assert_mount_matches(&volume, &files);

    // The app: its own mount namespace, receiving the Dataset by propagation (as
    // HostToContainer does), `ls -l` and a read of every file in a loop, errors counted.
    let stop = s.path("pod/stop");
    let result = s.path("pod/result");
    let app_script = format!(
        "n=0; e=0; while [ ! -e {stop} ]; do n=$((n+1)); ls -l {v} > /dev/null 2>> {log} || e=$((e+1)); \
         for f in {v}/*.bin; do cat \"$f\" > /dev/null 2>> {log} || e=$((e+1)); done; done; echo \"$n $e\" > {result}",
        stop = stop.display(),
        v = volume.display(),
        log = s.path("pod/app-errors.log").display(),
        result = result.display(),
    );
    let mut app = lan.hosts.get("pod").command(Path::new("unshare"));
    app.args(["--mount", "--propagation", "slave", "--", "sh", "-c", &app_script]).stdout(Stdio::null()).stderr(Stdio::null());
    let mut app = Proc(app.spawn().unwrap());
    std::thread::sleep(Duration::from_millis(500));

    // `kill 1` inside the sidecar (from a process in its PID namespace): the daemon is
    // replaced, the mount stays. Then SIGKILL of the daemon itself.
    let daemon = eventually(10, "the FUSE daemon", || children(pid1).first().copied());
    let inside = Command::new("nsenter").args(["-t", &pid1.to_string(), "-p", "--", "kill", "-TERM", "1"]).status().unwrap();
    assert!(inside.success());
    let replaced = eventually(10, "a new daemon after kill 1", || children(pid1).first().copied().filter(|d| *d != daemon));
    assert!(std::fs::read_to_string(s.path("sidecar.log")).unwrap().contains("FUSE daemon replaced"), "{}", std::fs::read_to_string(s.path("sidecar.log")).unwrap());
    std::thread::sleep(Duration::from_millis(500));
    unsafe { libc::kill(replaced as i32, libc::SIGKILL) };
    eventually(10, "a new daemon after SIGKILL", || children(pid1).first().copied().filter(|d| *d != replaced));
    std::thread::sleep(Duration::from_millis(1000));
    std::fs::write(&stop, "").unwrap();
    let _ = app.0.wait();
    let counts = std::fs::read_to_string(&result).unwrap();
    let (loops, errors) = counts.trim().split_once(' ').unwrap();
    let app_errors = std::fs::read_to_string(s.path("pod/app-errors.log")).unwrap_or_default();
    assert_eq!(errors, "0", "the app saw errors over {loops} loops:\n{app_errors}");
    assert!(loops.parse::<u32>().unwrap() > 5, "the app hardly ran: {loops} loops");
    println!("app: {loops} loops of ls -l and reads, 0 errors, through kill 1 and a SIGKILL of the daemon");

    // The whole sidecar container restarted (SIGKILL of its PID 1 kills its namespace; the
    // kubelet starts it again): the app's mount is dead until the new sidecar mounts again,
    // over the dead one, which propagates to the app's namespace.
    let seen = s.path("pod/seen");
    let watch_script = format!(
        "while [ ! -e {stop2} ]; do if ls {v} > /dev/null 2>&1; then echo ok >> {seen}; else echo err >> {seen}; fi; sleep 0.05; done",
        stop2 = s.path("pod/stop2").display(),
        v = volume.display(),
        seen = seen.display(),
    );
    let mut watcher = lan.hosts.get("pod").command(Path::new("unshare"));
    watcher.args(["--mount", "--propagation", "slave", "--", "sh", "-c", &watch_script]).stdout(Stdio::null()).stderr(Stdio::null());
    let mut watcher = Proc(watcher.spawn().unwrap());
    eventually(10, "the watcher running", || std::fs::read_to_string(&seen).ok().filter(|t| t.contains("ok")));
    let killed = Instant::now();
    unsafe { libc::kill(pid1 as i32, libc::SIGKILL) };
    let _ = sidecar_proc.0.wait();
    let dead = std::fs::read_dir(&volume).map(|_| ()).map_err(|e| e.raw_os_error());
    let mut restarted = start_sidecar("sidecar-2.log");
    let back = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| eventually(30, "the Dataset served again after the restart", || {
        if let Ok(Some(status)) = restarted.0.try_wait() {
            panic!("the restarted sidecar ended ({status}): {}", std::fs::read_to_string(s.path("sidecar-2.log")).unwrap_or_default());
        }
        std::fs::read_dir(&volume).ok().map(|_| killed.elapsed())
    })));
    let back = back.unwrap_or_else(|_| {
        let mounts: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo").unwrap().lines().filter(|l| l.contains("pod/data")).map(str::to_string).collect();
        panic!("not served again: {:?}\nmounts:\n{}\nlog:\n{}", std::fs::read_dir(&volume).err(), mounts.join("\n"), std::fs::read_to_string(s.path("sidecar-2.log")).unwrap_or_default());
    });
    tree::assert_mount_matches(&volume, &files);
    let lines = || std::fs::read_to_string(&seen).unwrap_or_default();
    let before = lines().lines().count();
    eventually(10, "the app's namespace seeing the new mount", || lines().lines().skip(before).any(|l| l == "ok").then_some(()));
    std::fs::write(s.path("pod/stop2"), "").unwrap();
    let _ = watcher.0.wait();
    let failed = lines().lines().filter(|l| *l == "err").count();
    // (The window can fall between two of the watcher's looks; an "ok" after the old
    // daemons are dead can only come from the new mount, so the check above is the proof.)
    println!("whole sidecar restarted: the volume read {dead:?} meanwhile; served again after {back:?} (not counting the kubelet's restart delay); the app's namespace saw {failed} failed ls -l of {} before the new mount reached it", lines().lines().count());

    // SIGTERM from outside the PID namespace (the kubelet stopping the pod): the sidecar
    // unmounts and exits, so a Job's pod completes.
    let pid1 = eventually(10, "the new sidecar's PID 1", || children(restarted.pid()).first().copied());
    let asked = Instant::now();
    unsafe { libc::kill(pid1 as i32, libc::SIGTERM) };
    let status = eventually(10, "the sidecar ending on SIGTERM from outside", || restarted.0.try_wait().ok().flatten());
    println!("SIGTERM from outside: the sidecar ended in {:?} ({status})", asked.elapsed());
    assert!(status.success(), "{status}: {}", std::fs::read_to_string(s.path("sidecar-2.log")).unwrap());
}
