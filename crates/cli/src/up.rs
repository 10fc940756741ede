//! `cistern up`: the embedded mode. One process runs the master, `replicas` workers and the
//! FUSE client of one Dataset, serves it at `<mount-root>/<namespace>/<name>`, publishes its
//! status in the run directory, and unmounts cleanly on Ctrl-C or SIGTERM.

use crate::rundir::{RunDir, StatusFile};
use crate::status;
use anyhow::{anyhow, bail, Context, Result};
use cistern_api::{DatasetPlan, Manifest};
use cistern_client::Client;
use cistern_fuse::{CisternFs, FuseMount};
use cistern_master::{spawn_summary, Namespace, NsMount, Summary};
use cistern_ufs::Ufs;
use cistern_worker::Worker;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
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
    /// Threads answering FUSE requests.
    #[arg(long, default_value_t = 8)]
    pub fuse_threads: usize,
}

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
    let created = prepare_mountpoint(&mountpoint)?;
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
    // Reach every mount before mounting anything, so a bad endpoint fails fast and cleanly.
    let mut mounts = Vec::new();
    for m in &plan.mounts {
        let ufs = Ufs::from_mount(m).map_err(|e| anyhow!(e.message))?;
        rt.block_on(ufs.probe(Duration::from_secs(15)))
            .map_err(|e| anyhow!("{}.mountPoint: {}", m.field, e.message))?;
        mounts.push(NsMount { ufs, path: m.path.clone() });
    }
    let ttl = plan.auto_sync.then_some(SYNC_TTL);
    let ns = Arc::new(Namespace::new(mounts, ttl));
    let tier = &plan.tiers[0];
    // SSD/HDD caches survive a restart (re-indexed on start); MEM is RAM and starts empty.
    let persistent = tier.medium != cistern_api::Medium::Mem;
    let mut workers = Vec::new();
    for i in 0..plan.replicas as usize {
        let dir = worker_dir(&tier.paths[i % tier.paths.len()], plan, i);
        let w = Worker::open(i, &dir, tier.quotas[i % tier.quotas.len()], tier.high, tier.low, persistent)
            .with_context(|| format!("spec.tieredstore.levels[0].path: cannot use {} for the cache", dir.display()))?;
        workers.push(w);
    }
    let worker_dirs: Vec<PathBuf> = workers.iter().map(|w| w.cache_dir().to_path_buf()).collect();
    let client = Arc::new(Client::new(ns.clone(), workers));
    let fs = CisternFs::new(client.clone(), rt.handle().clone(), ttl.unwrap_or(Duration::from_secs(3600)));
    let file_count = fs.file_count.clone();
    let fsname = format!("cistern:{}/{}", plan.namespace, plan.name);
    let mount = FuseMount::mount(mountpoint, &fsname, fs, args.fuse_threads)
        .with_context(|| format!("cannot mount {}", mountpoint.display()))?;
    let summary = {
        let _g = rt.enter();
        spawn_summary(ns.clone())
    };
    let created = jiff::Timestamp::try_from(SystemTime::now()).map(|t| t.to_string()).unwrap_or_default();
    let publish = || -> Result<StatusFile> {
        let sum = summary.lock().expect("summary lock").clone();
        if let Summary::Done(s) = &sum {
            file_count.store(s.files, Ordering::Relaxed);
        }
        let stats = client.stats();
        let mut ds = serde_json::to_value(&plan.dataset)?;
        ds["metadata"]["namespace"] = plan.namespace.clone().into();
        ds["metadata"]["creationTimestamp"] = created.clone().into();
        ds["status"] = status::dataset_status("Bound", &sum, &stats, (&plan.name, &plan.namespace, plan.runtime_kind));
        let mut rtv = runtime_json(plan)?;
        rtv["metadata"]["namespace"] = plan.namespace.clone().into();
        rtv["metadata"]["creationTimestamp"] = created.clone().into();
        rtv["status"] = status::runtime_status(plan.replicas, true, &stats);
        let sf = StatusFile { pid: std::process::id(), mountpoint: mountpoint.to_path_buf(), dataset: ds, runtime: rtv };
        run_dir.write_status(&sf)?;
        Ok(sf)
    };
    let first = publish()?;
    println!("Dataset {}/{} ({}) is mounted at {}", plan.namespace, plan.name, plan.runtime_kind, mountpoint.display());
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
    for d in worker_dirs.into_iter().filter(|_| !persistent) {
        // A MEM cache does not outlive `up`: it holds RAM (see the README).
        let _ = std::fs::remove_dir_all(&d);
        if let Some(parent) = d.parent() {
            let _ = std::fs::remove_dir(parent); // only if no other worker left files there
        }
    }
    println!("Dataset {}/{} unmounted from {}", plan.namespace, plan.name, mountpoint.display());
    Ok(())
}

fn runtime_json(plan: &DatasetPlan) -> Result<serde_json::Value> {
    Ok(match &plan.runtime {
        cistern_api::Runtime::Jindo(r) => serde_json::to_value(r)?,
        cistern_api::Runtime::Alluxio(r) => serde_json::to_value(r)?,
        cistern_api::Runtime::JuiceFS(r) => serde_json::to_value(r)?,
    })
}

fn worker_dir(tier_path: &Path, plan: &DatasetPlan, i: usize) -> PathBuf {
    tier_path.join("cistern").join(format!("{}-{}", plan.namespace, plan.name)).join(format!("worker-{i}"))
}

/// Makes sure the mount point is an empty directory that nothing is mounted on; returns
/// whether it was created here (and should be removed on exit).
fn prepare_mountpoint(path: &Path) -> Result<bool> {
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
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else { return false };
    let want = path.to_string_lossy();
    info.lines().any(|l| l.split(' ').nth(4).map(unescape_mountinfo).as_deref() == Some(&*want))
}

fn unescape_mountinfo(s: &str) -> String {
    s.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")
}
