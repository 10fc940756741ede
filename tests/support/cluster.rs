//! A real Kubernetes control plane for the tests (`scripts/local-cluster.sh`): kube-apiserver,
//! kube-controller-manager, kube-scheduler, etcd and kwok's three fake nodes on 127.0.0.1, with
//! the real kubectl and helm. `CISTERN_CLUSTER=DIR` reuses one started by hand; otherwise the
//! first test starts one in a temporary directory, stopped when the test process exits.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub struct Cluster {
    pub dir: PathBuf,
    pub kubeconfig: PathBuf,
    pub kubectl: PathBuf,
}

static CLUSTER: OnceLock<Cluster> = OnceLock::new();
static STARTED_DIR: OnceLock<PathBuf> = OnceLock::new();

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/local-cluster.sh")
}

extern "C" fn stop_at_exit() {
    if let Some(dir) = STARTED_DIR.get() {
        let _ = Command::new("bash").arg(script()).arg("stop").arg(dir).stdout(Stdio::null()).stderr(Stdio::null()).status();
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// The control plane all tests of this process share (each test works in its own namespace).
pub fn cluster() -> &'static Cluster {
    CLUSTER.get_or_init(|| {
        let dir = match std::env::var_os("CISTERN_CLUSTER") {
            Some(d) => PathBuf::from(d),
            None => {
                let dir = std::env::temp_dir().join(format!("cistern-cluster-{}", std::process::id()));
                let status = Command::new("bash").arg(script()).arg("start").arg(&dir).status().expect("run scripts/local-cluster.sh");
                STARTED_DIR.set(dir.clone()).unwrap();
                unsafe { libc::atexit(stop_at_exit) };
                assert!(status.success(), "scripts/local-cluster.sh start {} failed (logs in {}/logs)", dir.display(), dir.display());
                dir
            }
        };
        Cluster { kubeconfig: dir.join("kubeconfig"), kubectl: dir.join("bin/kubectl"), dir }
    })
}

/// What a command printed, or why it failed.
pub type CmdResult = Result<String, String>;

fn run(mut cmd: Command, stdin: Option<&str>) -> CmdResult {
    use std::io::Write;
    cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() }).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| format!("spawn {cmd:?}: {e}"))?;
    if let Some(input) = stdin {
        child.stdin.take().unwrap().write_all(input.as_bytes()).map_err(|e| e.to_string())?;
    }
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        Ok(stdout)
    } else {
        Err(format!("{cmd:?} failed ({}):\n{}{}", out.status, stdout, String::from_utf8_lossy(&out.stderr)))
    }
}

impl Cluster {
    fn kubectl_cmd(&self, kubeconfig: &Path, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.kubectl);
        cmd.arg("--kubeconfig").arg(kubeconfig).args(args);
        cmd
    }
    /// `kubectl ARGS` as the cluster admin.
    pub fn try_kubectl(&self, args: &[&str]) -> CmdResult {
        run(self.kubectl_cmd(&self.kubeconfig, args), None)
    }
    pub fn kubectl(&self, args: &[&str]) -> String {
        self.try_kubectl(args).unwrap_or_else(|e| panic!("{e}"))
    }
    /// `kubectl ARGS` with `input` on stdin (`-f -`).
    pub fn try_kubectl_in(&self, args: &[&str], input: &str) -> CmdResult {
        run(self.kubectl_cmd(&self.kubeconfig, args), Some(input))
    }
    pub fn kubectl_in(&self, args: &[&str], input: &str) -> String {
        self.try_kubectl_in(args, input).unwrap_or_else(|e| panic!("{e}"))
    }
    /// `kubectl ARGS` with another kubeconfig (a service account's).
    pub fn try_kubectl_as(&self, kubeconfig: &Path, args: &[&str]) -> CmdResult {
        run(self.kubectl_cmd(kubeconfig, args), None)
    }
    /// One object as JSON, if it exists.
    pub fn get_json(&self, args: &[&str]) -> Option<serde_json::Value> {
        let mut all = vec!["get"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["-o", "json"]);
        self.try_kubectl(&all).ok().map(|s| serde_json::from_str(&s).expect("kubectl printed JSON"))
    }
    /// `helm ARGS` against this cluster.
    pub fn helm(&self, args: &[&str]) -> String {
        let mut cmd = Command::new("helm");
        cmd.arg("--kubeconfig").arg(&self.kubeconfig).args(args);
        run(cmd, None).unwrap_or_else(|e| panic!("{e}"))
    }
    /// A fresh namespace for one test (deleted by the next run's cluster, not waited for).
    pub fn namespace(&self, name: &str) -> String {
        let _ = self.try_kubectl(&["delete", "namespace", name, "--wait=true", "--timeout=60s"]);
        self.kubectl(&["create", "namespace", name]);
        // Pods need the namespace's default service account (made by the controller manager).
        wait_until(60, &format!("service account default in {name}"), || self.try_kubectl(&["get", "sa", "default", "-n", name]).is_ok());
        name.to_string()
    }
    /// A kubeconfig that authenticates with a token of `namespace/service_account`.
    pub fn service_account_kubeconfig(&self, namespace: &str, service_account: &str) -> PathBuf {
        let token = self.kubectl(&["create", "token", service_account, "-n", namespace, "--duration", "2h"]);
        let admin = std::fs::read_to_string(&self.kubeconfig).unwrap();
        let server = admin.lines().find_map(|l| l.trim().strip_prefix("server: ")).unwrap().to_string();
        let path = self.dir.join(format!("{namespace}-{service_account}.kubeconfig"));
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: local\n  cluster:\n    server: {server}\n    certificate-authority: {ca}\n\
             users:\n- name: {service_account}\n  user:\n    token: {token}\ncontexts:\n- name: local\n  context: {{cluster: local, user: {service_account}, namespace: {namespace}}}\n\
             current-context: local\n",
            ca = self.dir.join("pki/ca.crt").display(),
            token = token.trim()
        );
        std::fs::write(&path, text).unwrap();
        path
    }
}

/// Polls `f` until it holds, or panics naming `what`.
pub fn wait_until(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out after {secs} s waiting for {what}");
        std::thread::sleep(Duration::from_millis(300));
    }
}
