//! `cistern up` on a `gs://` bucket: Fluid's GCS samples through OpenDAL's gcs service,
//! against fake-gcs-server (the GCS JSON API on 127.0.0.1, built from the Go module proxy by
//! `scripts/local-cluster.sh build`; no real GCS is reachable from here). A public bucket:
//! no credential is read from the environment.

mod support;

use std::process::{Child, Command, Stdio};
use support::*;

struct FakeGcs(Child);

impl Drop for FakeGcs {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn fake_gcs_bin() -> std::path::PathBuf {
    let cache = std::env::var_os("CISTERN_CLUSTER_CACHE")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/cistern-cluster"));
    let bin = cache.join("bin/fake-gcs-server");
    assert!(bin.exists(), "{} is missing: run `bash scripts/local-cluster.sh build` (scripts/test.sh does)", bin.display());
    bin
}

#[test]
fn a_gs_bucket_is_served_byte_for_byte() {
    let s = Scratch::new();
    let files = tree::layout(40, 6 << 20);
    // fake-gcs-server loads `<data>/<bucket>/<object path>` at start.
    let data = s.path("gcs-data");
    tree::write_local(&data.join("fluid-bucket").join("train"), &files);
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let _server = FakeGcs(
        Command::new(fake_gcs_bin())
            .args(["-scheme", "http", "-host", "127.0.0.1", "-port", &port.to_string(), "-backend", "memory", "-log-level", "error"])
            .arg("-data")
            .arg(&data)
            .arg("-public-host")
            .arg(format!("127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    eventually(30, "fake-gcs-server answering", || std::net::TcpStream::connect(("127.0.0.1", port)).ok());
    let cache = s.path("cache");
    std::fs::create_dir_all(&cache).unwrap();
    let yaml = format!(
        "apiVersion: data.fluid.io/v1alpha1\nkind: Dataset\nmetadata:\n  name: gcs\nspec:\n  mounts:\n    - mountPoint: gs://fluid-bucket/train\n      name: train\n      path: /\n      options:\n        fs.gcs.endpoint: http://127.0.0.1:{port}\n---\napiVersion: data.fluid.io/v1alpha1\nkind: AlluxioRuntime\nmetadata:\n  name: gcs\nspec:\n  replicas: 1\n  tieredstore:\n    levels:\n      - mediumtype: SSD\n        path: {}\n        quota: 256Mi\n",
        cache.display()
    );
    let file = s.write("gcs.yaml", &yaml);
    let up = Up::start(&s, &file, &[], "default", "gcs");
    tree::assert_mount_matches(&up.mountpoint, &files);
}
