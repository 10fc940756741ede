//! `cistern up`: the embedded mode. One process runs the master, `replicas` workers and the
//! FUSE client of one Dataset, serves it at `<mount-root>/<namespace>/<name>`, publishes its
//! status in the run directory, and unmounts cleanly on Ctrl-C or SIGTERM.

use crate::rundir::{RunDir, StatusFile};
use crate::served::Served;
use crate::status;
use anyhow::{anyhow, bail, Context, Result};
use cistern_api::{DatasetPlan, Manifest, Medium};
use cistern_client::Client;
use cistern_fuse::{CisternFs, FuseMount};
use cistern_master::{spawn_summary, Namespace, NsMount};
use cistern_ufs::Ufs;
use cistern_worker::{LevelSpec, ReadOptions, Worker};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

#[derive(clap::Args, Debug)]
pub struct UpArgs {
    /// The YAML file with a Dataset and its runtime (and optionally Secrets); `-` for stdin.
    #[arg(short = 'f', long = "filename")]
    pub file: PathBuf,
    /// Serve this Dataset when the file declares several.
    #[arg(long)]
    pub name: Option<String>,
    /// Where datasets are mounted: `<mount-root>/<namespace>/<name>`.
    #[arg(long, default_value = "/mnt/cistern", env = "CISTERN_MOUNT_ROOT")]
    pub mount_root: PathBuf,
    /// Secrets for encryptOptions, one file per key: DIR/<secret>/<key> or DIR/<key>.
    #[arg(long)]
    pub secret_dir: Option<PathBuf>,
    #[command(flatten)]
    pub run: crate::RunRootArg,
    /// The web port: metrics, status and log level (`HOST:PORT`; port 0 picks a free one).
    #[arg(long, default_value = DEFAULT_WEB_ADDR, env = "CISTERN_WEB_ADDR")]
    pub web_addr: String,
    /// Threads answering FUSE requests.
    #[arg(long, default_value_t = 8)]
    pub fuse_threads: usize,
}

/// Alluxio's master web port, on loopback only.
const DEFAULT_WEB_ADDR: &str = "127.0.0.1:19999";

/// How long a directory listing is trusted when `metadataSyncPolicy.autoSync` is on.
const SYNC_TTL: Duration = Duration::from_secs(30);

pub fn run(args: UpArgs) -> Result<()> {
    let mut manifest = Manifest::from_path(&args.file)?;
    if let Some(dir) = &args.secret_dir {
        manifest.secrets = std::mem::take(&mut manifest.secrets).with_dir(dir).map_err(|e| anyhow!(e))?;
    }
    let plan = manifest.plan(args.name.as_deref()).map_err(|e| anyhow!("{}: {e}", args.file.display()))?;
    let run_dir = RunDir::acquire(&args.run.run_root, &plan.namespace, &plan.name)?;
    let mountpoint = args.mount_root.join(&plan.namespace).join(&plan.name);
    let created = prepare_mountpoint(&mountpoint, &fsname(&plan))?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().worker_threads(4).build()?;
    let result = serve(&args, &plan, &run_dir, &mountpoint, &rt);
    run_dir.clear();
    if created {
        let _ = std::fs::remove_dir(&mountpoint);
    }
    rt.shutdown_timeout(Duration::from_secs(2));
    result
}

fn serve(args: &UpArgs, plan: &DatasetPlan, run_dir: &RunDir, mountpoint: &Path, rt: &tokio::runtime::Runtime) -> Result<()> {
    // Reach every mount before mounting anything, so a bad endpoint fails fast and cleanly;
    // unless this dataset's namespace is already stored, which is served without the UFS.
    let stored = plan.meta_dir.join(cistern_master::store::STORE_FILE).exists();
    let mut mounts = Vec::new();
    for m in &plan.mounts {
        let ufs = match Ufs::from_mount(m) {
            Ok(ufs) => ufs,
            Err(e) if stored => Ufs::unavailable(&m.mount_point, &e.message),
            Err(e) => bail!(e.message),
        };
        if let Err(e) = rt.block_on(ufs.probe(Duration::from_secs(15))) {
            if !stored {
                bail!("{}.mountPoint: {}", m.field, e.message);
            }
            tracing::warn!("{}.mountPoint: {}; serving the stored namespace and cache until it is back", m.field, e.message);
            eprintln!("warning: {}.mountPoint unreachable ({}); serving the stored namespace and cache", m.field, e.message);
        }
        mounts.push(NsMount { ufs, path: m.path.clone() });
    }
    let ttl = plan.auto_sync.then_some(SYNC_TTL);
    // The namespace and mount table persist in namespace.meta-dir (seeds 000 and 002).
    let ns = Arc::new(Namespace::open(&plan.meta_dir, mounts, ttl).map_err(|e| anyhow!(e.message))?);
    let mut workers = Vec::new();
    for i in 0..plan.replicas as usize {
        let levels = worker_levels(plan, i);
        let w = Worker::open(i, &levels, ReadOptions::default()).with_context(|| {
            let dirs: Vec<String> = levels.iter().flat_map(|l| l.dirs.iter().map(|d| d.0.display().to_string())).collect();
            format!("spec.tieredstore.levels: cannot use {} for the cache", dirs.join(", "))
        })?;
        workers.push(w);
    }
    // MEM levels do not outlive `up`: they hold RAM (see the README).
    let mem_dirs: Vec<PathBuf> = workers
        .iter()
        .flat_map(|w| w.tiers().levels().iter().filter(|l| l.medium == "MEM").flat_map(|l| l.stores().iter().map(|s| s.dir().to_path_buf())).collect::<Vec<_>>())
        .collect();
    let client = Arc::new(Client::new(ns.clone(), workers));
    let fs = CisternFs::new(client.clone(), rt.handle().clone(), ttl.unwrap_or(Duration::from_secs(3600)));
    let file_count = fs.file_count.clone();
    let mount = FuseMount::mount(mountpoint, &fsname(plan), fs, args.fuse_threads)
        .with_context(|| format!("cannot mount {}", mountpoint.display()))?;
    let summary = {
        let _g = rt.enter();
        spawn_summary(ns.clone())
    };
    let created = jiff::Timestamp::try_from(SystemTime::now()).map(|t| t.to_string()).unwrap_or_default();
    let served = Arc::new(Served {
        plan: plan.clone(),
        client: client.clone(),
        summary,
        file_count,
        created,
        mountpoint: mountpoint.to_path_buf(),
        web: OnceLock::new(),
    });
    let listener = rt.block_on(bind_web(&args.web_addr))?;
    let web_url = format!("http://{}", listener.local_addr()?);
    let _ = served.web.set(web_url.clone());
    rt.spawn(cistern_master::web::serve(listener, served.clone()));
    let publish = || -> Result<StatusFile> {
        let sf = served.status_file()?;
        run_dir.write_status(&sf)?;
        Ok(sf)
    };
    let first = publish()?;
    println!("Dataset {}/{} ({}) is mounted at {}", plan.namespace, plan.name, plan.runtime_kind, mountpoint.display());
    println!("Web UI, metrics and log level: {web_url}/ (/metrics, /api/v1/status, /api/v1/loglevel)");
    print!("{}", status::dataset_table(&[first.dataset], false));
    use std::io::Write;
    let _ = std::io::stdout().flush();

    rt.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => break,
                _ = term.recv() => break,
                _ = tick.tick() => { if let Err(e) = publish() { tracing::warn!(error = %e, "cannot write status"); } }
            }
        }
        Ok::<_, anyhow::Error>(())
    })?;
    tracing::info!("unmounting {}", mountpoint.display());
    mount.unmount().with_context(|| format!("cannot unmount {}", mountpoint.display()))?;
    for d in mem_dirs {
        let _ = std::fs::remove_dir_all(&d);
        if let Some(parent) = d.parent() {
            let _ = std::fs::remove_dir(parent); // only if no other worker left files there
        }
    }
    println!("Dataset {}/{} unmounted from {}", plan.namespace, plan.name, mountpoint.display());
    Ok(())
}

/// Binds the web port; when the default port is taken (another `up` on this machine), falls
/// back to a free one and says so, since the URL is printed and written to the status file.
async fn bind_web(addr: &str) -> Result<tokio::net::TcpListener> {
    match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => Ok(l),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && addr == DEFAULT_WEB_ADDR => {
            tracing::warn!("{addr} is in use; serving the web port on a free port instead");
            Ok(tokio::net::TcpListener::bind("127.0.0.1:0").await?)
        }
        Err(e) => Err(e).with_context(|| format!("--web-addr {addr}: cannot listen; choose another address or port")),
    }
}

/// Worker `i`'s cache levels: every level of `spec.tieredstore`, each path with its quota,
/// under `<path>/cistern/<namespace>-<name>/worker-<i>`.
fn worker_levels(plan: &DatasetPlan, i: usize) -> Vec<LevelSpec> {
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

fn fsname(plan: &DatasetPlan) -> String {
    format!("cistern:{}/{}", plan.namespace, plan.name)
}

/// Makes sure the mount point is an empty directory that nothing is mounted on; returns
/// whether it was created here (and should be removed on exit).
fn prepare_mountpoint(path: &Path, fsname: &str) -> Result<bool> {
    // Our own mount left dead by a killed `up` (its daemon gone): take it down and go on.
    let dead = |p: &Path| std::fs::read_dir(p).err().and_then(|e| e.raw_os_error()) == Some(libc::ENOTCONN);
    if mount_source(path).as_deref() == Some(fsname) && dead(path) {
        tracing::warn!("{} is a dead mount of this dataset from a killed run; unmounting it", path.display());
        nix::mount::umount2(path, nix::mount::MntFlags::MNT_DETACH)
            .with_context(|| format!("cannot unmount the dead mount {}; run `umount -l {}`", path.display(), path.display()))?;
    }
    if is_mountpoint(path) {
        bail!(
            "{} is already a mount point (a stale mount from a crashed run?); unmount it with `umount -l {}` or choose another --mount-root",
            path.display(),
            path.display()
        );
    }
    match std::fs::read_dir(path) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                bail!("{} is not an empty directory; empty it or choose another --mount-root", path.display());
            }
            Ok(false)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(path).with_context(|| format!("cannot create mount point {}", path.display()))?;
            Ok(true)
        }
        Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => bail!(
            "{} is a dead FUSE mount (transport endpoint not connected); unmount it with `umount -l {}`",
            path.display(),
            path.display()
        ),
        Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => {
            bail!("{} is not a directory; choose another --mount-root", path.display())
        }
        Err(e) => Err(e).with_context(|| format!("cannot use mount point {}", path.display())),
    }
}

/// True when something is mounted exactly at `path` (read from /proc/self/mountinfo).
pub fn is_mountpoint(path: &Path) -> bool {
    mountinfo_line(path).is_some()
}

/// The source (for FUSE, the fsname) of the mount at `path`.
fn mount_source(path: &Path) -> Option<String> {
    let line = mountinfo_line(path)?;
    let (_, after) = line.split_once(" - ")?;
    after.split(' ').nth(1).map(unescape_mountinfo)
}

fn mountinfo_line(path: &Path) -> Option<String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let want = path.to_string_lossy();
    // The last matching line is the mount on top.
    info.lines().filter(|l| l.split(' ').nth(4).map(unescape_mountinfo).as_deref() == Some(&*want)).last().map(str::to_string)
}

fn unescape_mountinfo(s: &str) -> String {
    s.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")
}
