//! `cistern up`: the embedded mode. Runs the master, `replicas` workers and the FUSE client of
//! one Dataset on this machine as supervised child processes ([`crate::supervise`]), mounts
//! it at `<mount-root>/<namespace>/<name>`, prints its status, and stops everything cleanly on
//! Ctrl-C or SIGTERM.
//!
//! Before starting anything it checks what would make a component fail at once (the YAML,
//! the UFS endpoints and keys, the metadata store, the mount point), so a mistake is one clear
//! error rather than a component dying in a loop.

use crate::component::{self, fsname, master_socket, worker_socket, DatasetArgs};
use crate::mountpoint::prepare_mountpoint;
use crate::rundir::{RunDir, StatusFile};
use crate::status;
use crate::supervise::{ChildSpec, Ready, Supervisor};
use anyhow::{anyhow, Result};
use cistern_api::juicefs::JuiceFsVolume;
use cistern_api::DatasetPlan;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

#[derive(clap::Args, Debug)]
pub struct UpArgs {
    #[command(flatten)]
    pub dataset: DatasetArgs,
    /// Where datasets are mounted: `<mount-root>/<namespace>/<name>`.
    #[arg(long, default_value = "/mnt/cistern", env = "CISTERN_MOUNT_ROOT")]
    pub mount_root: PathBuf,
    #[command(flatten)]
    pub run: crate::RunRootArg,
    /// This Dataset's run directory (PIDs, sockets, status) [default: <run-root>/<namespace>-<name>].
    #[arg(long)]
    pub run_dir: Option<PathBuf>,
    /// The web port: metrics, status and log level (`HOST:PORT`; port 0 picks a free one).
    #[arg(long, default_value = component::master::DEFAULT_WEB_ADDR, env = "CISTERN_WEB_ADDR")]
    pub web_addr: String,
    /// Threads answering FUSE requests.
    #[arg(long, default_value_t = 8)]
    pub fuse_threads: usize,
    /// Run the FUSE client as one process without a supervisor (the fallback for kernels
    /// before 6.9, which cannot hand a live connection to a new daemon): when it dies, the
    /// mount is taken down and mounted again, and descriptors opened before fail.
    #[arg(long, env = "CISTERN_FUSE_STANDALONE", value_parser = clap::builder::FalseyValueParser::new())]
    pub fuse_standalone: bool,
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop_signal(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

pub fn run(args: UpArgs, log_level: &str) -> Result<()> {
    let plan = args.dataset.plan()?;
    // Fields that shape Kubernetes pods do not apply to processes on one machine; the ones
    // Cistern never applies are said here as `render` and the operator say them.
    for field in cistern_operator::pod_shape::unhonoured(&plan) {
        eprintln!("warning: {}: {field}", plan.name);
    }
    let spec = plan.runtime.spec();
    let own_policy = match &plan.runtime {
        cistern_api::Runtime::Jindo(r) => r.spec.clean_cache_policy.is_some(),
        cistern_api::Runtime::JuiceFS(r) => r.spec.clean_cache_policy.is_some(),
        cistern_api::Runtime::Alluxio(_) => false,
    };
    if own_policy || spec.management.clean_cache_policy.is_some() {
        eprintln!("warning: {}: spec.cleanCachePolicy: not applied by `cistern up`; it bounds cleaning a deleted runtime's cache off Kubernetes nodes, and `up` keeps its cache for the next start", plan.name);
    }
    // A juicefs:// Dataset runs on the JuiceFS engine (crate::juicefs), as in Fluid.
    let juicefs = JuiceFsVolume::from_plan(&plan, Some(&plan.meta_dir)).map_err(|e| anyhow!("{}: {e}", args.dataset.file.display()))?;
    if let Some(vol) = &juicefs {
        crate::juicefs::find_binary(vol)?;
    }
    let run_dir_path = args.run_dir.clone().unwrap_or_else(|| args.run.run_root.join(format!("{}-{}", plan.namespace, plan.name)));
    let run_dir = RunDir::acquire(&run_dir_path, &plan.namespace, &plan.name)?;
    let mountpoint = args.mount_root.join(&plan.namespace).join(&plan.name);
    let fs_name = juicefs.as_ref().map(crate::juicefs::fsname).unwrap_or_else(|| fsname(&plan));
    let created = prepare_mountpoint(&mountpoint, &fs_name, false)?;
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to an atomic.
        unsafe { libc::signal(sig, on_stop_signal as *const () as libc::sighandler_t) };
    }
    let result = match &juicefs {
        Some(vol) => crate::juicefs::serve(&plan, vol, &run_dir.path, &mountpoint, &STOP),
        None => check(&plan).and_then(|()| serve(&args, &plan, &run_dir.path, &mountpoint, log_level)),
    };
    run_dir.clear();
    if created {
        let _ = std::fs::remove_dir(&mountpoint);
    }
    result
}

/// Fails fast on what would stop the master at once: an unreachable UFS (unless a namespace
/// is stored) and a metadata store that cannot be opened.
fn check(plan: &DatasetPlan) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(component::open_mounts(plan, true, component::namespace_stored(plan)))?;
    // A master of a killed `up` may take a moment to die and release the store.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match cistern_master::store::open(&plan.meta_dir) {
            Ok(db) => {
                drop(db);
                return Ok(());
            }
            Err(e) if e.message.contains("already open") && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => return Err(anyhow!(e.message)),
        }
    }
}

fn serve(args: &UpArgs, plan: &DatasetPlan, run_dir: &Path, mountpoint: &Path, log_level: &str) -> Result<()> {
    // Made before any component starts, so workers find the key the master signs with.
    crate::credentials::ensure_ref_key(&crate::credentials::default_dir(run_dir))?;
    crate::credentials::ensure_tls(&crate::credentials::default_dir(run_dir))?;
    // After the store was opened and the credentials made here, as root.
    let user = crate::run_as::prepare(plan, run_dir)?;
    let mut sup = Supervisor::new(run_dir)?;
    let child_args = |sub: &str, extra: &[&dyn AsRef<std::ffi::OsStr>]| -> Vec<OsString> {
        let mut v: Vec<OsString> = vec![sub.into(), "--log-level".into(), log_level.into()];
        v.extend(args.dataset.to_args());
        v.extend(["--run-dir".into(), run_dir.as_os_str().to_owned()]);
        v.extend(extra.iter().map(|e| e.as_ref().to_owned()));
        v
    };
    let web: &dyn AsRef<std::ffi::OsStr> = &args.web_addr;
    if plan.masters <= 1 {
        sup.start(
            ChildSpec::cistern(
                "master".into(),
                child_args("master", &[&"--web-addr", web, &"--mountpoint", &mountpoint]),
                Ready::Socket(master_socket(run_dir)),
            )
            .as_user(user),
            &STOP,
        )?;
    }
    // Several masters: `master-N` with its own store (`DatasetPlan::master_meta_dir`) and
    // socket; master 0 takes the web port asked for, the others a free one each.
    for i in 0..plan.masters {
        if plan.masters <= 1 {
            break;
        }
        let (id, meta_dir) = (i.to_string(), plan.master_meta_dir(i));
        let free_web = "127.0.0.1:0".to_string();
        let web_i: &dyn AsRef<std::ffi::OsStr> = if i == 0 { web } else { &free_web };
        sup.start(
            ChildSpec::cistern(
                format!("master-{i}"),
                child_args("master", &[&"--web-addr", web_i, &"--mountpoint", &mountpoint, &"--id", &id, &"--meta-dir", &meta_dir]),
                Ready::Socket(component::master_n_socket(run_dir, i)),
            )
            .as_user(user),
            &STOP,
        )?;
    }
    for i in 0..plan.replicas as usize {
        let index = i.to_string();
        sup.start(
            ChildSpec::cistern(
                format!("worker-{i}"),
                child_args("worker", &[&"--index", &index]),
                Ready::Socket(worker_socket(run_dir, i)),
            )
            .as_user(user),
            &STOP,
        )?;
    }
    let threads = args.fuse_threads.to_string();
    let fuse = if args.fuse_standalone {
        // Restarted by `sup` like any child; it unmounts the dead mount and mounts again.
        ChildSpec::cistern(
            "fuse".into(),
            child_args("fuse", &[&"--mountpoint", &mountpoint, &"--threads", &threads, &"--standalone"]),
            Ready::Mount(mountpoint.to_path_buf(), fsname(plan)),
        )
    } else {
        // It runs and replaces the FUSE daemon itself, which it names in fuse.pid.
        ChildSpec::cistern(
            "fuse-supervisor".into(),
            child_args("fuse", &[&"--mountpoint", &mountpoint, &"--threads", &threads]),
            Ready::Mount(mountpoint.to_path_buf(), fsname(plan)),
        )
    };
    sup.start(fuse, &STOP)?;
    let first = first_status(run_dir, plan.replicas);
    println!("Dataset {}/{} ({}) is mounted at {}", plan.namespace, plan.name, plan.runtime_kind, mountpoint.display());
    if let Some(sf) = &first {
        if let Some(web) = &sf.web {
            println!("Web UI, metrics and log level: {web}/ (/metrics, /api/v1/status, /api/v1/loglevel)");
        }
        print!("{}", status::dataset_table(std::slice::from_ref(&sf.dataset), false));
    }
    let fuse = if args.fuse_standalone { "FUSE (standalone)" } else { "FUSE supervisor and daemon" };
    let masters = if plan.masters > 1 { format!("{} masters (Raft)", plan.masters) } else { "master".to_string() };
    println!("Components: {masters}, {} worker(s), {fuse}; PIDs and sockets in {}", plan.replicas, run_dir.display());
    use std::io::Write;
    let _ = std::io::stdout().flush();

    sup.watch(&STOP);
    tracing::info!("stopping: unmounting {}", mountpoint.display());
    sup.stop(Duration::from_secs(10));
    println!("Dataset {}/{} unmounted from {}", plan.namespace, plan.name, mountpoint.display());
    Ok(())
}

/// The master's status once every worker has reported (or after a few seconds).
fn first_status(run_dir: &Path, replicas: u32) -> Option<StatusFile> {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut last = None;
    while Instant::now() < deadline && !STOP.load(Ordering::Relaxed) {
        if let Some(sf) = std::fs::read(run_dir.join("status.json")).ok().and_then(|t| serde_json::from_slice::<StatusFile>(&t).ok()) {
            let ready = sf.runtime["status"]["workerNumberReady"].as_u64().unwrap_or(0);
            last = Some(sf);
            if ready >= replicas as u64 {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    last
}
