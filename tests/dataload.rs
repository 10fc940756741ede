//! `cistern load` (and `kind: DataLoad`): prefetch through the running `up`, then the data stays
//! readable with the UFS gone.

mod support;

use support::*;

#[test]
fn load_whole_dataset_then_read_with_the_ufs_gone() {
    let s = Scratch::new();
    let ufs = s.path("ufs");
    let files = tree::layout(200, 24 << 20);
    tree::write_local(&ufs, &files);
    let total: u64 = files.values().map(|v| v.len() as u64).sum();
    let yaml = dataset_yaml("demo", &format!("local://{}", ufs.display()), "", &s.path("cache"), "256Mi", 2)
        + "  management:\n    metadataSyncPolicy:\n      autoSync: false\n";
    let ds = s.write("demo.yaml", &yaml);

    // Not served yet: a clear error.
    let o = s.cistern(&["load", "-f", ds.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(stderr_of(&o).contains("Dataset default/demo is not served on this machine"), "{}", stderr_of(&o));

    let up = Up::start(&s, &ds, &[], "default", "demo");

    // A DataLoad with one target that does not exist fails with the reason.
    let bad = s.write(
        "bad-load.yaml",
        "apiVersion: data.fluid.io/v1alpha1\nkind: DataLoad\nmetadata:\n  name: bad\nspec:\n  dataset:\n    name: demo\n    namespace: default\n  target:\n    - path: /nope\n",
    );
    let o = s.cistern(&["load", "-f", bad.to_str().unwrap()]);
    assert!(!o.status.success());
    let err = stderr_of(&o);
    assert!(err.contains("DataLoad default/bad: Failed") && err.contains("target path `/nope`: not found"), "{err}");
    let st: serde_json::Value =
        serde_json::from_slice(&std::fs::read(s.run_root().join("default-demo/dataload-bad.json")).unwrap()).unwrap();
    assert_eq!(st["status"]["phase"], "Failed");

    // A DataLoad of two targets: only those get cached.
    let part = s.write(
        "load.yaml",
        "apiVersion: data.fluid.io/v1alpha1\nkind: DataLoad\nmetadata:\n  name: part\nspec:\n  dataset:\n    name: demo\n    namespace: default\n  loadMetadata: true\n  target:\n    - path: /d1\n    - path: /big/large.bin\n",
    );
    let o = s.cistern(&["load", "-f", part.to_str().unwrap()]);
    let err = stderr_of(&o);
    assert!(o.status.success(), "{err}");
    for phase in ["Pending", "Executing", "Complete"] {
        assert!(err.contains(&format!("DataLoad default/part: {phase}")), "{err}");
    }
    assert!(err.contains("loading: "), "plain progress lines when not a terminal: {err}");
    let part_bytes: u64 =
        files.iter().filter(|(k, _)| k.starts_with("d1/") || k.starts_with("big/")).map(|(_, v)| v.len() as u64).sum();
    // The status prints two decimals of MiB: allow that rounding (about 5 KiB). Workers report
    // to the master every second, so the status follows within a couple of seconds.
    let slack = 6 << 10;
    let cached = eventually(10, "the part in the status", || {
        let cached = cached_bytes(&s);
        (cached + slack >= part_bytes).then_some(cached)
    });
    assert!(cached + slack < total, "cached {cached}, part {part_bytes}, total {total}");

    // The whole Dataset: CACHED equals UFS TOTAL SIZE.
    let o = s.cistern(&["load", "-f", ds.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr_of(&o));
    assert!(stdout_of(&o).contains(&format!("loaded {} files", files.len())), "{}", stdout_of(&o));
    // "100.0%" is printed from 99.95% on, a heartbeat before the last bytes are counted: wait
    // for CACHED to equal UFS TOTAL SIZE itself (workers report every second).
    let v = eventually(30, "everything cached", || {
        let v: serde_json::Value = serde_json::from_slice(&s.cistern(&["get", "dataset", "-o", "json"]).stdout).ok()?;
        (v["status"]["cacheStates"]["cached"] == v["status"]["ufsTotal"]).then_some(v)
    });
    assert_eq!(v["status"]["cacheStates"]["cachedPercentage"], "100.0%");

    // The UFS goes away; every byte is still served from the cache.
    std::fs::rename(&ufs, s.path("ufs-gone")).unwrap();
    tree::assert_mount_matches(&up.mountpoint, &files);
}

fn cached_bytes(s: &Scratch) -> u64 {
    // The status is rewritten every second; wait for one written after the load.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let v: serde_json::Value = serde_json::from_slice(&s.cistern(&["get", "dataset", "-o", "json"]).stdout).unwrap();
    parse_size(v["status"]["cacheStates"]["cached"].as_str().unwrap())
}

/// Parses `12.34MiB` back into (approximate) bytes.
fn parse_size(s: &str) -> u64 {
    let split = s.find(|c: char| c.is_ascii_alphabetic()).unwrap();
    let (n, unit) = s.split_at(split);
    let mult = match unit {
        "B" => 1.0,
        "KiB" => 1024.0,
        "MiB" => 1048576.0,
        "GiB" => 1073741824.0,
        other => panic!("unit {other}"),
    };
    (n.parse::<f64>().unwrap() * mult) as u64
}

/// `cistern load --master`: what the DataLoad Job runs on Kubernetes. No mount is read; the
/// workers fetch from the UFS and keep the bytes, and the status counts them.
#[test]
fn load_through_the_master_without_a_mount() {
    let s = Scratch::new();
    let ufs = s.path("ufs");
    let files = tree::layout(60, 8 << 20);
    tree::write_local(&ufs, &files);
    let yaml = dataset_yaml("demo", &format!("local://{}", ufs.display()), "", &s.path("cache"), "256Mi", 2);
    let ds = s.write("demo.yaml", &yaml);
    let _up = Up::start(&s, &ds, &[], "default", "demo");
    let master = format!("unix:{}", s.run_root().join("default-demo/master.sock").display());

    // A target that does not exist fails with the reason, naming the path.
    let o = s.cistern(&["load", "--master", &master, "--load-name", "job", "/nope"]);
    assert!(!o.status.success());
    let err = stderr_of(&o);
    assert!(err.contains("DataLoad job: Failed") && err.contains("target path `/nope`: not found"), "{err}");

    let o = s.cistern(&["load", "--master", &master, "/d1"]);
    let err = stderr_of(&o);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("DataLoad load: Complete"), "{err}");
    let d1: Vec<_> = files.iter().filter(|(k, _)| k.starts_with("d1/")).collect();
    assert!(!d1.is_empty());
    assert!(stdout_of(&o).contains(&format!("loaded {} files", d1.len())), "{}", stdout_of(&o));
    let want: u64 = d1.iter().map(|(_, v)| v.len() as u64).sum();
    let cached = eventually(10, "the loaded part in the status", || {
        let cached = cached_bytes(&s);
        (cached + (6 << 10) >= want).then_some(cached)
    });
    let total: u64 = files.values().map(|v| v.len() as u64).sum();
    assert!(cached < total, "only /d1 was loaded: cached {cached} of {total}");

    // A master that is not there: a clear error, not a hang.
    let o = s.cistern(&["load", "--master", "unix:/nonexistent/master.sock", "--master-timeout-secs", "2"]);
    assert!(!o.status.success());
    assert!(stderr_of(&o).contains("the master at unix:/nonexistent/master.sock is unreachable"), "{}", stderr_of(&o));
}

/// DataLoad `loadMetadata` lists the targets from the UFS first (a file added after the last
/// listing is loaded, which a plain load does not see with autoSync off), and
/// `target[].replicas` keeps each file on that many workers: the copies come from the owner's
/// cache, so the UFS still sends each byte once.
#[test]
fn load_metadata_finds_new_files_and_replicas_keep_copies_on_other_workers() {
    let s = Scratch::new();
    let ufs = s.path("ufs");
    let files = tree::layout(30, 8 << 20);
    tree::write_local(&ufs, &files);
    let yaml = dataset_yaml("demo", &format!("local://{}", ufs.display()), "", &s.path("cache"), "256Mi", 3)
        + "  management:\n    metadataSyncPolicy:\n      autoSync: false\n";
    let ds = s.write("demo.yaml", &yaml);
    let _up = Up::start(&s, &ds, &[], "default", "demo");
    let base = Up::web_url(&s, "default", "demo");
    let figure = |name: &str| metric(&http("GET", &format!("{base}/metrics")).1, name).unwrap_or(0);

    // Listed once; then a file appears in the UFS.
    let plain = s.cistern(&["load", "-f", ds.to_str().unwrap(), "/d1"]);
    assert!(plain.status.success(), "{}", stderr_of(&plain));
    let fresh = vec![7u8; 3 << 20];
    std::fs::write(ufs.join("d1/added-later.bin"), &fresh).unwrap();
    let plain = s.cistern(&["load", "-f", ds.to_str().unwrap(), "/d1"]);
    let d1: Vec<u64> = files.iter().filter(|(k, _)| k.starts_with("d1/")).map(|(_, v)| v.len() as u64).collect();
    assert!(stdout_of(&plain).contains(&format!("loaded {} files", d1.len())), "the listing is kept without loadMetadata: {}", stdout_of(&plain));

    let load = s.write(
        "load.yaml",
        "apiVersion: data.fluid.io/v1alpha1\nkind: DataLoad\nmetadata:\n  name: twice\nspec:\n  dataset:\n    name: demo\n    namespace: default\n  loadMetadata: true\n  target:\n    - path: /d1\n      replicas: 2\n",
    );
    let before = (figure("cistern_ufs_fetched_bytes_total"), figure("cistern_peer_fetched_bytes_total"));
    let o = s.cistern(&["load", "-f", load.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr_of(&o));
    assert!(stdout_of(&o).contains(&format!("loaded {} files", d1.len() + 1)), "the file added later is loaded: {}", stdout_of(&o));
    let d1_bytes: u64 = d1.iter().sum::<u64>() + fresh.len() as u64;
    let (ufs_read, copied) = eventually(10, "the copies counted", || {
        let now = (figure("cistern_ufs_fetched_bytes_total") - before.0, figure("cistern_peer_fetched_bytes_total") - before.1);
        (now.1 >= d1_bytes).then_some(now)
    });
    // Only the new file came from the UFS (the rest was cached by the plain loads); every byte
    // of /d1 was copied once more, from the owner's cache to the next worker.
    assert!(ufs_read <= fresh.len() as u64 + (4 << 20), "UFS read {ufs_read} for a {} byte file", fresh.len());
    assert!(copied >= d1_bytes && copied < d1_bytes + (8 << 20), "copied {copied} of {d1_bytes}");
    // The Dataset's cached bytes count each copy.
    let cached = cached_bytes(&s);
    assert!(cached + (64 << 10) >= 2 * d1_bytes, "cached {cached}, two copies of {d1_bytes}");
}
