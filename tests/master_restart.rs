//! The master process SIGKILLed during the first listing, during reads and during a DataLoad
//! (seeds 000 and 002). `up` starts it again; it opens the same store in namespace.meta-dir;
//! the FUSE client and the load wait for it and go on without an error; and once the S3 server
//! itself is stopped, the same namespace and every byte are still served.
//!
//! One test in its own binary: it stops the binary's S3 server.

mod support;

use std::io::{Read, Seek, SeekFrom};
use std::time::{Duration, Instant};
use support::s3;
use support::*;

fn yaml(name: &str, s: &Scratch) -> String {
    s3::dataset_yaml(name, "JindoRuntime", &persistent_jindo_spec(&s.path("meta"), &s.path("ssd")))
}


#[test]
fn the_master_killed_at_any_moment_loses_nothing_and_readers_see_no_error() {
    let s = Scratch::new();
    let mut files = tree::layout(1500, 48 << 20);
    files.insert("later/model.bin".into(), tree::bytes(77, 6 << 20));
    files.insert("later/config.json".into(), b"{\"layers\": 12}\n".to_vec());
    s3::upload("mr", &files);
    let file = s.write("mr.yaml", &yaml("mr", &s));
    let up = Up::start(&s, &file, &[], "default", "mr");
    let mnt = up.mountpoint.clone();

    // 1. During the first listing: a walk of the whole tree (and the master's background count)
    //    while the master is killed twice. The walk sees every file and no error.
    let walker = {
        let mnt = mnt.clone();
        std::thread::spawn(move || tree::walk(&mnt))
    };
    std::thread::sleep(Duration::from_millis(30));
    up.kill9_component("master");
    std::thread::sleep(Duration::from_millis(100));
    up.kill9_component("master");
    let walked = walker.join().expect("the walk failed while the master restarted");
    let want: std::collections::BTreeMap<String, u64> = files.iter().map(|(k, v)| (k.clone(), v.len() as u64)).collect();
    assert_eq!(walked, want);
    let namespace = tree::snapshot(&mnt);

    // 2a. A read in flight while the master is down: `later/model.bin` is opened, its metadata
    //     allowed to expire in the client, the master killed, and an uncached range read at
    //     once: the client must wait for the new master, then read the right bytes.
    let model = &files["later/model.bin"];
    let mut f = std::fs::File::open(mnt.join("later/model.bin")).unwrap();
    std::thread::sleep(Duration::from_millis(1200));
    let old = up.pid("master");
    // SAFETY: kill(2) of the master `up` started.
    unsafe { libc::kill(old as i32, libc::SIGKILL) };
    let mut buf = vec![0u8; 1 << 20];
    f.seek(SeekFrom::Start(3 << 20)).unwrap();
    f.read_exact(&mut buf).unwrap();
    assert!(buf[..] == model[3 << 20..4 << 20], "wrong bytes after the master restarted");
    // A name never looked up before also needs the master.
    assert_eq!(read_all(&mnt.join("later/config.json")), files["later/config.json"]);
    assert_ne!(up.pid("master"), old);
    assert!(up.stderr().contains("retrying"), "the client never saw the master down:\n{}", up.stderr());

    // 2b. A reader streaming the large file slowly while the master is killed three times.
    let reader = {
        let path = mnt.join("big/large.bin");
        std::thread::spawn(move || {
            let mut f = std::fs::File::open(path).unwrap();
            let (mut out, mut chunk) = (Vec::new(), vec![0u8; 1 << 20]);
            loop {
                let n = f.read(&mut chunk).unwrap();
                if n == 0 {
                    return out;
                }
                out.extend_from_slice(&chunk[..n]);
                std::thread::sleep(Duration::from_millis(40));
            }
        })
    };
    for _ in 0..3 {
        std::thread::sleep(Duration::from_millis(400));
        up.kill9_component("master");
    }
    let got = reader.join().expect("the streaming reader saw an error");
    assert!(got == files["big/large.bin"], "the streaming reader got wrong bytes ({} bytes)", got.len());

    // 3. During a DataLoad: the load waits for the new master and completes.
    let load = std::process::Command::new(cistern_bin())
        .args(["load", "-f"])
        .arg(&file)
        .env("CISTERN_RUN_ROOT", s.run_root())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(150));
    up.kill9_component("master");
    let out = load.wait_with_output().unwrap();
    let err = stderr_of(&out);
    assert!(out.status.success(), "the load failed across a master restart: {err}");
    assert!(err.contains("DataLoad default/mr-load: Complete"), "{err}");

    // 4. The S3 server stopped, then the master killed again: it restarts from its store
    //    without listing anything, and serves the same namespace and every byte from the cache.
    // SAFETY: kill(2) of the S3 server this test binary started.
    unsafe { libc::kill(s3::server().pid as i32, libc::SIGKILL) };
    up.kill9_component("master");
    let started = Instant::now();
    assert_eq!(tree::snapshot(&mnt), namespace, "the namespace changed across the kills");
    tree::drop_page_cache(&mnt);
    tree::assert_mount_matches(&mnt, &files);
    assert!(started.elapsed() < Duration::from_secs(60));
    assert!(up.stderr().contains("serving the stored namespace"), "{}", up.stderr());
}
