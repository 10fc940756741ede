//! The desired set of workers reaches a running master: on Kubernetes the operator rewrites
//! the mounted configuration when the runtime is scaled (`kubectl scale`), and the master
//! follows it, so clients place files over the new set at their next refresh.

mod support;

use support::*;

#[test]
fn a_running_master_follows_the_configured_replicas() {
    let s = Scratch::new();
    let data = s.path("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("f"), b"x").unwrap();
    let yaml = |replicas: u32| dataset_yaml("scaled", &format!("local://{}", data.display()), "", &s.path("cache"), "64Mi", replicas);
    let file = s.write("scaled.yaml", &yaml(1));
    let master = MasterProcess::start(&s, &file);
    let port = master.web_port;
    let desired = || -> Option<u64> {
        let url = format!("http://127.0.0.1:{port}/api/v1/status");
        let (code, body) = std::panic::catch_unwind(|| http("GET", &url)).ok()?;
        let v: serde_json::Value = serde_json::from_str(&body).ok().filter(|_| code == 200)?;
        v["runtime"]["status"]["desiredWorkerNumberScheduled"].as_u64()
    };
    eventually(30, "the master's status", || desired().filter(|d| *d == 1));
    std::fs::write(&file, yaml(3)).unwrap();
    eventually(30, "three desired workers after the configuration changed", || desired().filter(|d| *d == 3));
}
