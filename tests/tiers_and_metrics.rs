//! Two cache levels through a real mount: MEM evicts into SSD, the SSD level survives a restart
//! of `up`, and the figures are on the web port in Prometheus format; the log level changes at
//! runtime.

mod support;

use support::*;

const MIB: u64 = 1 << 20;

fn two_level_yaml(name: &str, ufs: &std::path::Path, mem: &std::path::Path, ssd: &std::path::Path) -> String {
    let spec = format!(
        "  replicas: 1
  tieredstore:
    levels:
      - mediumtype: MEM
        path: {mem}
        quota: 16Mi
        high: \"0.9\"
        low: \"0.5\"
      - mediumtype: SSD
        path: {ssd}
        quota: 256Mi
        high: \"0.95\"
        low: \"0.8\"
",
        mem = mem.display(),
        ssd = ssd.display()
    );
    dataset_with_runtime(name, &format!("local://{}", ufs.display()), "", "AlluxioRuntime", &spec)
}

fn metrics(base: &str) -> String {
    let (code, body) = http("GET", &format!("{base}/metrics"));
    assert_eq!(code, 200, "{body}");
    body
}

fn level(text: &str, name: &str, medium: &str) -> u64 {
    let prefix = format!("{name}{{dataset_namespace=\"default\",dataset=\"tiers\",worker=\"0\",medium=\"{medium}\"}}");
    metric(text, &prefix).unwrap_or_else(|| panic!("no {prefix} in\n{text}"))
}

#[test]
fn mem_evicts_into_ssd_which_survives_a_restart_and_metrics_show_it() {
    let s = Scratch::new();
    let ufs = s.path("ufs");
    std::fs::create_dir_all(&ufs).unwrap();
    let mut files = std::collections::BTreeMap::new();
    for i in 0..8 {
        files.insert(format!("part-{i}.bin"), tree::bytes(100 + i, 6 * MIB as usize + 777 * i as usize));
    }
    tree::write_local(&ufs, &files);
    let total: u64 = files.values().map(|v| v.len() as u64).sum();
    let file = s.write("tiers.yaml", &two_level_yaml("tiers", &ufs, &s.path("mem"), &s.path("ssd")));

    let mut up = Up::start(&s, &file, &[], "default", "tiers");
    let base = Up::web_url(&s, "default", "tiers");
    assert!(up.stdout().contains(&base) || eventually(10, "the web URL printed", || Some(up.stdout()).filter(|o| o.contains(&base))).contains(&base));
    tree::assert_mount_matches(&up.mountpoint, &files);

    let m = metrics(&base);
    let (mem_used, ssd_used) = (level(&m, "cistern_level_used_bytes", "MEM"), level(&m, "cistern_level_used_bytes", "SSD"));
    assert!(mem_used <= 16 * MIB, "MEM over its quota: {mem_used}");
    assert!(level(&m, "cistern_level_demoted_bytes_total", "MEM") > 0, "nothing demoted:\n{m}");
    assert_eq!(mem_used + ssd_used, total, "every byte is cached on one level or the other:\n{m}");
    assert_eq!(level(&m, "cistern_level_quota_bytes", "SSD"), 256 * MIB);
    let fetched = metric(&m, "cistern_ufs_fetched_bytes_total{").unwrap();
    assert_eq!(fetched, total, "each byte fetched once:\n{m}");
    // The FUSE daemon runs on the worker's node: it reads what the worker stored from the
    // cache files itself (short-circuit), rather than over the RPC.
    let short_circuit = metric(&m, "cistern_short_circuit_bytes_total{").unwrap();
    assert!(short_circuit > total / 2, "{short_circuit} of {total} bytes by short-circuit:\n{m}");

    // Durations: of the worker's UFS requests and of the FUSE client's operations (sent with
    // its refresh, every 2 s), and the CPU and memory of both processes; promtool accepts the
    // whole exposition as served.
    let m = eventually(10, "the FUSE client's figures after the reads", || {
        let m = metrics(&base);
        let has = |op: &str| m.lines().any(|l| l.starts_with("cistern_fuse_operation_duration_seconds_count{") && l.contains(&format!("op=\"{op}\"")));
        (has("open") && has("read")).then_some(m)
    });
    let count = |m: &str, prefix: &str| metric(m, prefix).unwrap_or_else(|| panic!("no {prefix} in\n{m}"));
    assert!(count(&m, "cistern_ufs_request_duration_seconds_count{dataset_namespace=\"default\",dataset=\"tiers\",instance=\"0\",op=\"read\"}") > 0, "{m}");
    for op in ["open", "read", "readdir"] {
        let line = m.lines().find(|l| l.starts_with("cistern_fuse_operation_duration_seconds_count{") && l.contains(&format!("op=\"{op}\""))).unwrap_or_else(|| panic!("no {op} in\n{m}"));
        assert!(!line.ends_with(" 0"), "{line}");
    }
    for component in ["worker", "fuse"] {
        let rss = m.lines().find(|l| l.starts_with("cistern_component_resident_memory_bytes{") && l.contains(&format!("component=\"{component}\""))).unwrap_or_else(|| panic!("no {component} in\n{m}"));
        assert!(!rss.ends_with(" 0"), "{rss}");
    }
    if let Ok(mut child) = std::process::Command::new("promtool").args(["check", "metrics"]).stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn() {
        use std::io::Write;
        child.stdin.take().unwrap().write_all(m.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success() && said.trim().is_empty(), "promtool check metrics on /metrics:\n{said}");
    }

    // A second pass is served from both levels, nothing from the UFS (complete cache files are
    // read by the kernel itself through FUSE passthrough, the rest by the worker).
    tree::drop_page_cache(&up.mountpoint);
    tree::assert_mount_matches(&up.mountpoint, &files);
    let m2 = metrics(&base);
    assert_eq!(metric(&m2, "cistern_ufs_fetched_bytes_total{").unwrap(), fetched, "second pass went to the UFS");
    let from_ufs = |m: &str| metric(m, "cistern_read_bytes_total{dataset_namespace=\"default\",dataset=\"tiers\",source=\"ufs\"}").unwrap();
    assert_eq!(from_ufs(&m2), from_ufs(&m), "second pass served UFS bytes");

    // The log level changes at runtime; a bad filter is refused with the reason.
    let (code, body) = http("PUT", &format!("{base}/api/v1/loglevel?level=debug"));
    assert_eq!(code, 200, "{body}");
    assert!(http("GET", &format!("{base}/api/v1/loglevel")).1.starts_with("master: debug"));
    let (code, body) = http("PUT", &format!("{base}/api/v1/loglevel?level=verbose%3D%3D"));
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("level"), "{body}");
    let (code, status) = http("GET", &format!("{base}/api/v1/status"));
    assert_eq!(code, 200);
    assert!(status.contains("\"cacheStates\""), "{status}");

    // `cistern loglevel` (Alluxio's logLevel) reaches the worker and the FUSE client over
    // their channel to the master: the worker reports its new filter, and logs a debug line
    // on the next read; a bad target is refused by name.
    let worker_debug = |up: &Up| up.stderr().lines().filter(|l| l.contains("DEBUG") && l.contains("cistern_worker")).count();
    assert_eq!(worker_debug(&up), 0, "the worker logged at debug before it was asked to");
    let o = s.cistern(&["loglevel", "--target", "all", "debug", "-f", file.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr_of(&o));
    assert!(stdout_of(&o).contains("workers: debug"), "{}", stdout_of(&o));
    eventually(10, "the worker reporting its new filter", || {
        let text = http("GET", &format!("{base}/api/v1/loglevel")).1;
        text.lines().any(|l| l.starts_with("worker 0") && l.contains(": debug")).then_some(())
    });
    eventually(10, "the FUSE client taking its filter", || up.stderr().contains("log level set by the master").then_some(()));
    eventually(10, "the FUSE client reporting its new filter", || {
        let text = http("GET", &format!("{base}/api/v1/loglevel")).1;
        text.lines().any(|l| l.starts_with("fuse ") && l.contains(": debug")).then_some(())
    });
    tree::drop_page_cache(&up.mountpoint);
    tree::assert_mount_matches(&up.mountpoint, &files);
    eventually(10, "a debug line of the worker", || (worker_debug(&up) > 0).then_some(()));
    let o = s.cistern(&["loglevel", "--target", "everyone", "debug", "-f", file.to_str().unwrap()]);
    assert!(!o.status.success() && stderr_of(&o).contains("target `everyone`"), "{}", stderr_of(&o));
    assert!(up.terminate().success(), "{}", up.stderr());

    // After a restart the SSD level is re-indexed and serves without the UFS; MEM starts empty.
    let mut up = Up::start(&s, &file, &[], "default", "tiers");
    let base = Up::web_url(&s, "default", "tiers");
    let m = metrics(&base);
    assert_eq!(level(&m, "cistern_level_used_bytes", "SSD"), ssd_used, "SSD level lost data over a restart");
    assert_eq!(level(&m, "cistern_level_used_bytes", "MEM"), 0);
    tree::assert_mount_matches(&up.mountpoint, &files);
    let refetched = metric(&metrics(&base), "cistern_ufs_fetched_bytes_total{").unwrap();
    assert!(refetched <= mem_used, "refetched {refetched} bytes; only MEM's {mem_used} were lost");
    assert!(up.terminate().success());
    assert!(!s.path("mem").join("cistern/default-tiers/worker-0").exists(), "MEM level left behind");
}
