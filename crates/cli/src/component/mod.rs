//! The components of a Dataset as separate processes: `cistern master`, `cistern worker` and
//! `cistern fuse`, talking gRPC (Unix sockets on one node, TCP across nodes). `cistern up`
//! starts and supervises them (see [`crate::supervise`]); on Kubernetes each runs in its own
//! pod from the same YAML.

pub mod csi;
pub mod fuse;
pub mod master;
pub mod operator;
pub mod webhook;
pub mod worker;

use anyhow::{anyhow, Result};
use cistern_api::{DatasetPlan, Manifest, Medium};
use cistern_worker::LevelSpec;
use cistern_client::Client;
use cistern_rpc::Address;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Which Dataset a component serves: the same YAML (and Secrets) every component reads.
#[derive(clap::Args, Debug, Clone)]
pub struct DatasetArgs {
    /// The YAML file with a Dataset and its runtime (and optionally Secrets); `-` for stdin.
    #[arg(short = 'f', long = "filename")]
    pub file: PathBuf,
    /// Serve this Dataset when the file declares several.
    #[arg(long)]
    pub name: Option<String>,
    /// Secrets for encryptOptions, one file per key: DIR/<secret>/<key> or DIR/<key>.
    #[arg(long)]
    pub secret_dir: Option<PathBuf>,
}

impl DatasetArgs {
    pub fn plan(&self) -> Result<DatasetPlan> {
        let mut manifest = Manifest::from_path(&self.file)?;
        if let Some(dir) = &self.secret_dir {
            manifest.secrets = std::mem::take(&mut manifest.secrets).with_dir(dir).map_err(|e| anyhow!(e))?;
        }
        let plan = manifest.plan(self.name.as_deref()).map_err(|e| anyhow!("{}: {e}", self.file.display()))?;
        crate::logging::redact(plan.mounts.iter().flat_map(|m| m.secret_values()));
        Ok(plan)
    }

    /// The plan as a client needs it: every read goes through the master and the workers, so
    /// the UFS credentials (`encryptOptions`) are neither needed nor looked for, and the FUSE
    /// pods and sidecars get none (least privilege). Their values in this plan are empty.
    pub fn plan_without_credentials(&self) -> Result<DatasetPlan> {
        let mut manifest = Manifest::from_path(&self.file)?;
        manifest.secrets = cistern_api::secret::SecretStore::references_only();
        manifest.plan(self.name.as_deref()).map_err(|e| anyhow!("{}: {e}", self.file.display()))
    }

    /// The arguments that make another component read the same Dataset.
    pub fn to_args(&self) -> Vec<std::ffi::OsString> {
        let mut out = vec!["-f".into(), self.file.clone().into_os_string()];
        if let Some(n) = &self.name {
            out.extend(["--name".into(), n.into()]);
        }
        if let Some(d) = &self.secret_dir {
            out.extend(["--secret-dir".into(), d.clone().into_os_string()]);
        }
        out
    }
}

/// The run directory of a Dataset when none is given: `<run-root>/<namespace>-<name>`.
pub fn default_run_dir(plan: &DatasetPlan) -> PathBuf {
    Path::new(crate::rundir::DEFAULT_RUN_ROOT).join(format!("{}-{}", plan.namespace, plan.name))
}

pub fn master_socket(run_dir: &Path) -> PathBuf {
    run_dir.join("master.sock")
}

/// Master `i`'s socket when the runtime has several (`master-0.sock`...).
pub fn master_n_socket(run_dir: &Path, i: u32) -> PathBuf {
    run_dir.join(format!("master-{i}.sock"))
}

/// Where the Dataset's masters listen on this node: `master.sock`, or one socket per master.
pub fn master_sockets(plan: &DatasetPlan, run_dir: &Path) -> Vec<Address> {
    match plan.masters {
        0 | 1 => vec![Address::Unix(master_socket(run_dir))],
        n => (0..n).map(|i| Address::Unix(master_n_socket(run_dir, i))).collect(),
    }
}

/// The master sockets a run directory holds: `master-N.sock` of several masters, else
/// `master.sock` (for tools that know the run directory but not the runtime).
pub fn sockets_in(run_dir: &Path) -> Vec<Address> {
    let mut several: Vec<(u32, PathBuf)> = std::fs::read_dir(run_dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let i = name.strip_prefix("master-")?.strip_suffix(".sock")?.parse().ok()?;
            Some((i, e.path()))
        })
        .collect();
    several.sort();
    if several.is_empty() || master_socket(run_dir).exists() {
        return vec![Address::Unix(master_socket(run_dir))];
    }
    several.into_iter().take(cistern_rpc::masters::MAX_MASTERS).map(|(_, p)| Address::Unix(p)).collect()
}

/// The masters a tool (`loglevel`, `quorum`) talks to: `--master` as given (one address or a
/// comma-separated list), else the sockets in the run directory, on this node, of the Dataset
/// in `file`; with that run directory when known. The tool's client certificate is installed
/// from `credentials`, else from beside a socket.
pub fn tool_masters(master: Option<&str>, file: Option<&Path>, name: Option<&str>, run_root: &Path, credentials: Option<PathBuf>) -> Result<Vec<Address>> {
    let (masters, run_dir) = match (master, file) {
        (Some(m), _) => {
            let list = cistern_rpc::masters::parse_list(m).map_err(|e| anyhow!("--master {e}"))?;
            let dir = match &list[0] {
                Address::Unix(p) => p.parent().map(PathBuf::from),
                Address::Tcp(_) => None,
            };
            (list, dir)
        }
        (None, Some(file)) => {
            let plan = DatasetArgs { file: file.to_path_buf(), name: name.map(str::to_string), secret_dir: None }.plan_without_credentials()?;
            let dir = run_root.join(default_run_dir(&plan).file_name().expect("a run directory name"));
            (sockets_in(&dir), Some(dir))
        }
        (None, None) => anyhow::bail!("give -f FILE (a Dataset served on this machine) or --master ADDRESSES"),
    };
    if let Some(dir) = credentials.or_else(|| run_dir.as_deref().map(crate::credentials::default_dir)) {
        crate::credentials::install_tls(&dir, cistern_rpc::tls::Role::Client)?;
    }
    Ok(masters)
}

/// `--master` as given (one address or a comma-separated list), else the node's sockets.
pub fn master_addresses(given: Option<&str>, plan: &DatasetPlan, run_dir: &Path) -> Result<Vec<Address>> {
    match given {
        Some(list) => cistern_rpc::masters::parse_list(list).map_err(|e| anyhow!("--master {e}")),
        None => Ok(master_sockets(plan, run_dir)),
    }
}

pub fn worker_socket(run_dir: &Path, i: usize) -> PathBuf {
    run_dir.join(format!("worker-{i}.sock"))
}

/// The FUSE file system name, which also tells our own mounts apart in mountinfo.
pub fn fsname(plan: &DatasetPlan) -> String {
    format!("cistern:{}/{}", plan.namespace, plan.name)
}

/// Worker `i`'s cache levels: every level of `spec.tieredstore`, each path with its quota,
/// under `<path>/cistern/<namespace>-<name>/worker-<i>`.
pub fn worker_levels(plan: &DatasetPlan, i: usize) -> Vec<LevelSpec> {
    plan.tiers
        .iter()
        .map(|t| {
            let medium = match t.medium {
                Medium::Mem => "MEM",
                Medium::Ssd => "SSD",
                Medium::Hdd => "HDD",
            };
            let dirs = t
                .paths
                .iter()
                .zip(&t.quotas)
                .map(|(p, q)| (p.join("cistern").join(format!("{}-{}", plan.namespace, plan.name)).join(format!("worker-{i}")), *q))
                .collect();
            LevelSpec { medium: medium.to_string(), dirs, high: t.high, low: t.low, persistent: t.medium != Medium::Mem }
        })
        .collect()
}

/// Resolves when the process is asked to stop (SIGTERM or Ctrl-C).
pub async fn stop_requested() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch SIGTERM; only Ctrl-C stops this process");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// The UFS of every mount, in mount order, each with whether it was reached. With `probe`,
/// each is reached once (a bad endpoint or key fails here, naming the field), unless
/// `tolerate` (a namespace is stored, or the caller can serve from its cache): then an
/// unreachable UFS is used anyway, for when it comes back.
pub async fn open_mounts(plan: &DatasetPlan, probe: bool, tolerate: bool) -> Result<Vec<(cistern_ufs::Ufs, bool)>> {
    use cistern_ufs::Ufs;
    let mut out = Vec::new();
    for m in &plan.mounts {
        let ufs = match Ufs::from_mount(m) {
            Ok(ufs) => ufs,
            Err(e) if tolerate => Ufs::unavailable(&m.mount_point, &e.message),
            Err(e) => anyhow::bail!(e.message),
        };
        let mut reached = true;
        if probe {
            if let Err(e) = ufs.probe(std::time::Duration::from_secs(15)).await {
                if !tolerate {
                    anyhow::bail!("{}.mountPoint: {}", m.field, e.message);
                }
                tracing::warn!("{}.mountPoint: {}; serving the stored namespace and cache until it is back", m.field, e.message);
                eprintln!("warning: {}.mountPoint unreachable ({}); serving the stored namespace and cache", m.field, e.message);
                reached = false;
            }
        }
        out.push((ufs, reached));
    }
    Ok(out)
}

/// True when the master of this plan has a stored namespace (served even without the UFS).
pub fn namespace_stored(plan: &DatasetPlan) -> bool {
    plan.meta_dir.join(cistern_master::store::STORE_FILE).exists()
}

/// How often a client asks the master which workers are live.
const WORKER_REFRESH: Duration = Duration::from_secs(2);

/// A client of the master, once it lists at least one worker; calls retry an unreachable
/// peer for `patience` (the client's default when `None`). `run_dir`: the run directory on
/// this node, where workers here keep their descriptor sockets (short-circuit reads and
/// passthrough); `None` reads every byte over gRPC.
pub fn connect(rt: &tokio::runtime::Runtime, masters: &[Address], patience: Option<Duration>, run_dir: Option<&Path>) -> Result<Arc<Client>> {
    let master = cistern_rpc::masters::join(masters);
    // Channels spawn their connection tasks on the runtime they are made in.
    let mut client = rt
        .block_on(async { Client::remote_any(masters) })
        .map_err(|e| anyhow!("the master at {master}: {}", e.message))?
        .with_short_circuit(run_dir.map(Path::to_path_buf))
        .with_log_control(crate::logging::CONTROL);
    if let Some(budget) = patience {
        client = client.with_backoff(cistern_rpc::Backoff { budget, ..Default::default() });
    }
    let client = Arc::new(client);
    rt.block_on(async {
        loop {
            match client.refresh_workers().await {
                Ok(n) if n > 0 => return Ok(()),
                Ok(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                Err(e) => return Err(anyhow!("the master at {master} is unreachable: {}", e.message)),
            }
        }
    })?;
    let refresher = client.clone();
    rt.spawn(async move {
        let mut tick = tokio::time::interval(WORKER_REFRESH);
        let mut applied = String::new();
        loop {
            tick.tick().await;
            if let Err(e) = refresher.refresh_workers().await {
                tracing::debug!("worker list: {}", e.message);
            }
            // The log filter the master asks clients for (`cistern loglevel --target fuse`).
            let wanted = refresher.wanted_log_level();
            if !wanted.is_empty() && wanted != applied {
                match crate::logging::set(&wanted) {
                    Ok(()) => tracing::info!(level = %wanted, "log level set by the master"),
                    Err(e) => tracing::warn!("the master's log level for FUSE clients: {e}"),
                }
                applied = wanted;
            }
        }
    });
    Ok(client)
}

