//! Three masters (`master.replicas: 3`, Raft) under `cistern up`, with real processes:
//!
//! 1. the leader SIGKILLed during the first listing, during reads and during a DataLoad: no
//!    entry lost, no error seen, and the longest stall printed;
//! 2. a follower whose store was wiped rejoins and catches up from the leader's snapshot;
//! 3. two of three down: what is known is still served, a changed directory keeps its last
//!    listing until a quorum is back, then shows the change;
//! 4. the S3 server stopped, each master killed in turn: the namespace is identical at the end,
//!    through the mount and in every master's store (same digest at the same log index).
//!
//! One test in its own binary: it stops the binary's S3 server.

mod support;

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use support::s3;
use support::*;

fn yaml(name: &str, s: &Scratch) -> String {
    // Three masters; listings older than 2 s are listed again, so changes reach the namespace
    // (and the log) all through the test.
    let spec = persistent_jindo_spec(&s.path("meta"), &s.path("ssd"))
        .replace("  master:\n", "  master:\n    replicas: 3\n")
        // A snapshot every 50 entries: the log is compacted many times during the test.
        .replace("    properties:\n", "    properties:\n      alluxio.master.journal.checkpoint.period.entries: \"50\"\n")
        .replace("  tieredstore:", "  properties:\n    alluxio.user.file.metadata.sync.interval: 2s\n  tieredstore:");
    s3::dataset_yaml(name, "JindoRuntime", &spec)
}

/// Which master leads, from the status file the leader writes.
fn leader(up: &Up) -> u64 {
    eventually(30, "a leader", || {
        let sf: serde_json::Value = serde_json::from_slice(&std::fs::read(up.run_dir.join("status.json")).ok()?).ok()?;
        sf["masters"]["leader"].as_u64()
    })
}

/// `cistern quorum` asked of master `i` alone: (its applied index, its namespace digest, the
/// whole answer).
fn quorum_of(up: &Up, i: u64) -> Option<(u64, String, String)> {
    let sock = up.run_dir.join(format!("master-{i}.sock"));
    let out = Command::new(cistern_bin()).args(["quorum", "--master"]).arg(format!("unix:{}", sock.display())).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let line = text.lines().find(|l| l.starts_with("NAMESPACE: sha256:"))?;
    let (digest, index) = line.trim_start_matches("NAMESPACE: sha256:").split_once(" at index ")?;
    Some((index.trim().parse().ok()?, digest.to_string(), text))
}

/// Waits until every master holds the same namespace at the same log index; returns it.
fn all_agree(up: &Up, what: &str) -> (u64, String) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let views: Vec<_> = (0..3).map(|i| quorum_of(up, i)).collect();
        if let Some(views) = views.iter().cloned().collect::<Option<Vec<_>>>() {
            let first = (views[0].0, views[0].1.clone());
            if views.iter().all(|v| (v.0, &v.1) == (first.0, &first.1)) {
                return first;
            }
        }
        if Instant::now() > deadline {
            panic!("timed out waiting for {what}: {views:#?}\n{}", up.stderr().lines().filter(|l| !l.contains(" INFO ")).collect::<Vec<_>>().join("\n"));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The mount walked with the time of each step: (files and sizes, the longest step).
fn timed_walk(root: &Path) -> (BTreeMap<String, u64>, Duration) {
    let mut out = BTreeMap::new();
    let mut longest = Duration::ZERO;
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let t = Instant::now();
        let entries: Vec<_> = std::fs::read_dir(root.join(&rel)).unwrap().map(|e| e.unwrap()).collect();
        longest = longest.max(t.elapsed());
        for e in entries {
            let t = Instant::now();
            let meta = std::fs::metadata(e.path()).unwrap();
            longest = longest.max(t.elapsed());
            let name = rel.join(e.file_name());
            if meta.is_dir() {
                stack.push(name);
            } else {
                out.insert(name.to_string_lossy().into_owned(), meta.len());
            }
        }
    }
    (out, longest)
}

fn kill_leader(up: &Up) -> u64 {
    let l = leader(up);
    up.kill9_component(&format!("master-{l}"));
    l
}

/// Keeps master `i` down: its store directory replaced by a file, so each restart fails.
fn hold_down(up: &Up, dir: &Path, i: u64) {
    std::fs::rename(dir, dir.with_extension("held")).unwrap();
    std::fs::write(dir, b"not a directory").unwrap();
    let pid = up.pid(&format!("master-{i}"));
    // SAFETY: kill(2) of a master `up` started.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
}

fn release(dir: &Path) {
    std::fs::remove_file(dir).unwrap();
    std::fs::rename(dir.with_extension("held"), dir).unwrap();
}

#[test]
fn three_masters_lose_no_entry_and_readers_see_no_error() {
    let s = Scratch::new();
    let mut files = tree::layout(1200, 40 << 20);
    files.insert("later/model.bin".into(), tree::bytes(77, 6 << 20));
    files.insert("later/config.json".into(), b"{\"layers\": 12}\n".to_vec());
    s3::upload("ha", &files);
    let file = s.write("ha.yaml", &yaml("ha", &s));
    let up = Up::start(&s, &file, &[], "default", "ha");
    let mnt = up.mountpoint.clone();
    let meta_dir = |i: u64| if i == 0 { s.path("meta") } else { PathBuf::from(format!("{}-master-{i}", s.path("meta").display())) };
    eventually(60, "three voters", || {
        let (_, _, text) = quorum_of(&up, 0)?;
        (text.matches(" voter ").count() == 3).then_some(())
    });
    let first = leader(&up);
    let rt = Command::new(cistern_bin()).args(["get", "runtime"]).env("CISTERN_RUN_ROOT", s.run_root()).output().unwrap();
    let rt = String::from_utf8_lossy(&rt.stdout).into_owned();
    assert!(rt.contains("MASTERS") && rt.contains("3/3") && rt.contains(&format!("master-{first}")), "{rt}");

    // 1a. The leader killed under the first listing of the whole tree.
    let walker = {
        let mnt = mnt.clone();
        std::thread::spawn(move || timed_walk(&mnt))
    };
    std::thread::sleep(Duration::from_millis(50));
    let killed = kill_leader(&up);
    let (walked, stall) = walker.join().expect("the walk saw an error while the leader died");
    let want: BTreeMap<String, u64> = files.iter().map(|(k, v)| (k.clone(), v.len() as u64)).collect();
    assert_eq!(walked, want);
    println!("failover under a listing: master-{killed} killed; the longest step of the walk took {} ms", stall.as_millis());
    assert!(stall < Duration::from_secs(10), "a step of the walk stalled {stall:?}");
    let namespace = tree::snapshot(&mnt);

    // 1b. Reads: the metadata expires in the client, the leader dies, and an uncached range and
    //     a name never looked up are read at once.
    let model = &files["later/model.bin"];
    let mut f = std::fs::File::open(mnt.join("later/model.bin")).unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    let started = Instant::now();
    kill_leader(&up);
    let mut buf = vec![0u8; 1 << 20];
    f.seek(SeekFrom::Start(3 << 20)).unwrap();
    f.read_exact(&mut buf).unwrap();
    assert!(buf[..] == model[3 << 20..4 << 20], "wrong bytes after the leader died");
    assert_eq!(read_all(&mnt.join("later/config.json")), files["later/config.json"]);
    println!("failover under reads: answered {} ms after the kill", started.elapsed().as_millis());

    // 1c. A DataLoad through the masters while the leader dies.
    let load = Command::new(cistern_bin())
        .args(["load", "-f"])
        .arg(&file)
        .env("CISTERN_RUN_ROOT", s.run_root())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    kill_leader(&up);
    let out = load.wait_with_output().unwrap();
    let err = stderr_of(&out);
    assert!(out.status.success() && err.contains("Complete"), "the load failed across an election: {err}");
    let (index, _) = all_agree(&up, "the three masters agree after the leader kills");
    println!("after three leader kills every master holds the same namespace at log index {index}");

    // 2. A follower's store wiped: it comes back from the leader's snapshot.
    let l = leader(&up);
    let f_id = (l + 1) % 3;
    let pid = up.pid(&format!("master-{f_id}"));
    // SAFETY: kill(2) of a master `up` started; stopped first so nothing is written meanwhile.
    unsafe { libc::kill(pid as i32, libc::SIGSTOP) };
    for name in ["namespace.redb", "raft.redb", "raft-snapshot.bin"] {
        let _ = std::fs::remove_file(meta_dir(f_id).join(name));
    }
    up.kill9_component(&format!("master-{f_id}"));
    all_agree(&up, "the wiped master caught up");
    assert!(up.stderr().contains("installed from the leader's snapshot"), "no snapshot was installed:\n{}", up.stderr());

    // 3. Two of three down (each restart fails): known names are still served, bytes right.
    let l = leader(&up);
    let down: Vec<u64> = (0..3).filter(|i| *i != (l + 1) % 3).collect();
    for i in &down {
        hold_down(&up, &meta_dir(*i), *i);
    }
    let added = format!("{}/added.txt", files.keys().next().unwrap().rsplit_once('/').unwrap().0);
    s3::upload("ha", &BTreeMap::from([(added.clone(), b"new while two masters were down\n".to_vec())]));
    std::thread::sleep(Duration::from_secs(3)); // older than the 2 s sync interval
    let started = Instant::now();
    tree::drop_page_cache(&mnt);
    assert_eq!(read_all(&mnt.join("later/config.json")), files["later/config.json"]);
    let mut f = std::fs::File::open(mnt.join("later/model.bin")).unwrap();
    f.read_exact(&mut buf).unwrap();
    assert!(buf[..] == model[..1 << 20]);
    println!("two of three masters down: known files read in {} ms", started.elapsed().as_millis());
    let added_path = mnt.join(&added);
    assert!(!added_path.exists(), "a listing was committed without a quorum");
    for i in &down {
        release(&meta_dir(*i));
    }
    let back = Instant::now();
    eventually(60, "the new file listed once a quorum is back", || added_path.exists().then_some(()));
    println!("quorum back: the waiting listing landed {} ms after the masters were released", back.elapsed().as_millis());
    assert_eq!(read_all(&added_path), b"new while two masters were down\n");
    all_agree(&up, "the masters agree once all are back");

    // 4. The S3 server stopped; each master killed in turn. Same namespace everywhere.
    let namespace_now = tree::snapshot(&mnt);
    assert_eq!(namespace_now.len(), namespace.len() + 1);
    // SAFETY: kill(2) of the S3 server this test binary started.
    unsafe { libc::kill(s3::server().pid as i32, libc::SIGKILL) };
    for i in 0..3 {
        up.kill9_component(&format!("master-{i}"));
        eventually(60, "a leader after each kill", || {
            let (_, _, text) = quorum_of(&up, i)?;
            text.contains("LEADER: master-").then_some(())
        });
    }
    assert_eq!(tree::snapshot(&mnt), namespace_now, "the namespace changed across the kills");
    let (index, digest) = all_agree(&up, "every master holds the same namespace");
    println!("UFS stopped, each master killed in turn: namespace sha256:{digest} at log index {index} on all three");
    // Compacted: each log keeps about one checkpoint period, however long the test ran.
    for i in 0..3 {
        let (_, _, text) = quorum_of(&up, i).unwrap();
        let kept: u64 = text.split("LOG: ").nth(1).and_then(|t| t.split_whitespace().next()).and_then(|n| n.parse().ok()).unwrap();
        assert!(kept <= 60 && text.contains("last snapshot at index"), "master-{i} log not compacted:\n{text}");
    }
    tree::drop_page_cache(&mnt);
    tree::assert_mount_matches(&mnt, &{
        let mut f = files.clone();
        f.insert(added.clone(), b"new while two masters were down\n".to_vec());
        f
    });
}

/// Online membership changes: the three masters of `up` grow to five with `cistern quorum add`
/// (two more `cistern master` processes), every member applies the same log, and `quorum
/// remove` takes the quorum back to three while it serves. A local directory is the UFS.
#[test]
fn the_quorum_grows_to_five_and_shrinks_back_to_three() {
    let s = Scratch::new();
    let ufs = s.path("ufs");
    for d in 0..4 {
        std::fs::create_dir_all(ufs.join(format!("d{d}"))).unwrap();
        for f in 0..20 {
            std::fs::write(ufs.join(format!("d{d}/f{f}.txt")), format!("{d}/{f}\n")).unwrap();
        }
    }
    let spec = persistent_jindo_spec(&s.path("meta"), &s.path("ssd")).replace("  master:\n", "  master:\n    replicas: 3\n");
    let file = s.write("q.yaml", &dataset_with_runtime("q", &format!("local://{}", ufs.display()), "", "JindoRuntime", &spec));
    let up = Up::start(&s, &file, &[], "default", "q");
    let mnt = up.mountpoint.clone();
    let quorum = |args: &[&str]| {
        let masters: Vec<String> = (0..3).map(|i| format!("unix:{}", up.run_dir.join(format!("master-{i}.sock")).display())).collect();
        let out = Command::new(cistern_bin()).arg("quorum").args(args).arg("--master").arg(masters.join(",")).output().unwrap();
        (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
    };
    eventually(60, "three voters", || (quorum(&[]).1.matches(" voter ").count() == 3).then_some(()));
    assert_eq!(std::fs::read_dir(mnt.join("d0")).unwrap().count(), 20);

    // `cistern loglevel -f` finds the three masters' sockets and sets each one's filter.
    let out = Command::new(cistern_bin()).args(["loglevel", "--target", "master", "debug", "-f"]).arg(&file).env("CISTERN_RUN_ROOT", s.run_root()).output().unwrap();
    assert!(out.status.success() && stdout_of(&out).contains("master: debug"), "{}", stderr_of(&out));
    for i in 0..3 {
        let sock = format!("unix:{}", up.run_dir.join(format!("master-{i}.sock")).display());
        let out = Command::new(cistern_bin()).args(["loglevel", "--target", "workers", "info", "--master", &sock]).output().unwrap();
        assert!(stdout_of(&out).contains("master: debug"), "master-{i} was not set: {}{}", stdout_of(&out), stderr_of(&out));
    }

    // Two more masters, each with its own store, named in a list of five.
    let five: Vec<String> = (0..5).map(|i| format!("unix:{}", up.run_dir.join(format!("master-{i}.sock")).display())).collect();
    let extra: Vec<std::process::Child> = (3..5)
        .map(|i| {
            Command::new(cistern_bin())
                .args(["master", "--web-addr", "127.0.0.1:0", "--id", &i.to_string(), "--masters", &five.join(",")])
                .arg("-f")
                .arg(&file)
                .arg("--run-dir")
                .arg(&up.run_dir)
                .arg("--meta-dir")
                .arg(s.path(&format!("meta-extra-{i}")))
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for i in 3..5 {
        let sock = up.run_dir.join(format!("master-{i}.sock"));
        eventually(30, "the extra master listening", || sock.exists().then_some(()));
        let (ok, text) = quorum(&["add", &i.to_string(), &format!("unix:{}", sock.display())]);
        assert!(ok, "quorum add {i}: {text}");
    }
    let (_, text) = quorum(&[]);
    assert_eq!(text.matches(" voter ").count(), 5, "{text}");
    println!("{text}");

    // A listing committed by five: every member applies it.
    std::fs::write(ufs.join("d1/new.txt"), b"new\n").unwrap();
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(std::fs::read_dir(mnt.join("d3")).unwrap().count(), 20);
    let digest_of = |i: usize| {
        let out = Command::new(cistern_bin()).args(["quorum", "--master", &five[i]]).output().ok()?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.lines().find(|l| l.starts_with("NAMESPACE: "))?.split_whitespace().nth(1).map(str::to_string)
    };
    eventually(60, "five masters with one namespace", || {
        let d: Vec<String> = (0..5).map(digest_of).collect::<Option<_>>()?;
        d.iter().all(|x| *x == d[0]).then_some(())
    });

    // Back to three, online: a configured master cannot be removed, the added ones can.
    let (ok, text) = quorum(&["remove", "1"]);
    assert!(!ok && text.contains("is configured"), "{text}");
    for i in [4, 3] {
        let (ok, text) = quorum(&["remove", &i.to_string()]);
        assert!(ok, "quorum remove {i}: {text}");
    }
    let (_, text) = quorum(&[]);
    assert_eq!(text.matches(" voter ").count(), 3, "{text}");
    assert!(!text.contains("master-3 ") && !text.contains("master-4 "), "{text}");
    for mut c in extra {
        let _ = c.kill();
        let _ = c.wait();
    }
    // Three again, and still serving: a leader's death is survived as before.
    let l = leader(&up);
    up.kill9_component(&format!("master-{l}"));
    assert_eq!(std::fs::read_dir(mnt.join("d2")).unwrap().count(), 20);
    eventually(30, "the new file listed", || mnt.join("d1/new.txt").exists().then_some(()));
}

/// The upgrade from one master: its `namespace.redb` becomes master 0's state and reaches the
/// two new masters as a snapshot, with the UFS gone (nothing is listed again, inode numbers
/// kept). Then `cistern format` of one master's store: it comes back from the others. Then
/// the Dataset's mounts change: the quorum's mount table follows, through the log.
#[test]
fn a_single_masters_store_becomes_the_quorums_and_a_formatted_master_catches_up() {
    use std::os::unix::fs::MetadataExt;
    let s = Scratch::new();
    let ufs = s.path("ufs");
    for d in 0..5 {
        std::fs::create_dir_all(ufs.join(format!("d{d}/sub"))).unwrap();
        for f in 0..30 {
            std::fs::write(ufs.join(format!("d{d}/f{f}.txt")), format!("{d}/{f}\n")).unwrap();
        }
        std::fs::write(ufs.join(format!("d{d}/sub/deep.txt")), b"deep\n").unwrap();
    }
    let one = persistent_jindo_spec(&s.path("meta"), &s.path("ssd"));
    let file = s.write("u.yaml", &dataset_with_runtime("u", &format!("local://{}", ufs.display()), "", "JindoRuntime", &one));
    let inodes = |mnt: &Path| -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        for d in 0..5 {
            for name in [format!("d{d}/f7.txt"), format!("d{d}/sub/deep.txt"), format!("d{d}")] {
                out.insert(name.clone(), std::fs::metadata(mnt.join(&name)).unwrap().ino());
            }
        }
        out
    };
    let before;
    let namespace;
    {
        let mut up = Up::start(&s, &file, &[], "default", "u");
        tree::walk(&up.mountpoint);
        namespace = tree::snapshot(&up.mountpoint);
        before = inodes(&up.mountpoint);
        assert!(s.path("meta").join("namespace.redb").exists());
        up.terminate();
    }
    // The UFS goes away, and the runtime asks for three masters.
    std::fs::rename(&ufs, s.path("ufs-away")).unwrap();
    let three = one.replace("  master:\n", "  master:\n    replicas: 3\n");
    let file = s.write("u.yaml", &dataset_with_runtime("u", &format!("local://{}", ufs.display()), "", "JindoRuntime", &three));
    {
        let mut up = Up::start(&s, &file, &[], "default", "u");
        assert_eq!(tree::snapshot(&up.mountpoint), namespace, "the upgraded quorum serves another namespace");
        assert_eq!(inodes(&up.mountpoint), before, "inode numbers changed across the upgrade");
        let (index, digest) = all_agree(&up, "the two new masters hold the single master's namespace");
        println!("upgraded: sha256:{digest} at index {index} on all three");
        up.terminate();
    }
    // One master's store formatted (Alluxio's formatJournal, per master): it catches up.
    let formatted = PathBuf::from(format!("{}-master-2", s.path("meta").display()));
    let out = s.cistern(&["format", "--yes", "--meta-dir", formatted.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(!formatted.join("namespace.redb").exists() && !formatted.join("raft.redb").exists());
    let mut up = Up::start(&s, &file, &[], "default", "u");
    all_agree(&up, "the formatted master caught up");
    assert_eq!(inodes(&up.mountpoint), before);
    assert!(up.stderr().contains("installed from the leader's snapshot"), "{}", up.stderr());
    up.terminate();

    // The Dataset's mounts change (the UFS back, shown under /data): the leader commits the
    // new mount table and every master starts the namespace again from it, alike.
    std::fs::rename(s.path("ufs-away"), &ufs).unwrap();
    let moved = dataset_with_runtime("u", &format!("local://{}", ufs.display()), "", "JindoRuntime", &three).replace("      path: /\n", "      path: /data\n");
    let file = s.write("u.yaml", &moved);
    let up = Up::start(&s, &file, &[], "default", "u");
    eventually(30, "the new mount table served", || up.mountpoint.join("data/d3/sub/deep.txt").exists().then_some(()));
    assert!(!up.mountpoint.join("d3").exists());
    assert_eq!(read_all(&up.mountpoint.join("data/d4/f9.txt")), b"4/9\n");
    all_agree(&up, "the masters agree on the new mount table");
    assert!(up.stderr().contains("differ from the quorum's"), "{}", up.stderr());
}
