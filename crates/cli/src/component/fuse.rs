//! `cistern fuse`: the FUSE client of a Dataset. Metadata comes from the master, data from the
//! workers the master lists; both are retried across their restarts, so a reader only waits.
//!
//! By default this process is the mount's **supervisor**: it mounts, keeps the `/dev/fuse`
//! connection, and runs the daemon that serves it (`cistern fuse --daemon`, handed a
//! duplicate of the descriptor as fd 3). When the daemon dies (SIGKILL, OOM, panic), a new
//! one adopts the same connection without unmounting and has the kernel resend the requests
//! in flight: applications only wait. `fuse.pid` names the live daemon and
//! `fuse-supervisor.pid` this process. SIGUSR1 (`cistern fuse --upgrade`) replaces the daemon
//! gracefully with the binary now at the same path (a hot upgrade). `--standalone` mounts and
//! serves in one process, the fallback for kernels without FUSE_NOTIFY_RESEND (6.9+): a dead
//! daemon then leaves a dead mount, which the next one takes down and mounts again.

use super::{connect, default_run_dir, fsname, DatasetArgs};
use crate::mountpoint::prepare_mountpoint;
use anyhow::{bail, Context, Result};
use cistern_client::Client;
use cistern_fuse::passthrough::table_memfd;
use cistern_fuse::{CisternFs, FuseMount, MountHolder, Passthrough};
use cistern_rpc::Address;
use std::ffi::OsString;
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(clap::Args, Debug)]
pub struct FuseArgs {
    #[command(flatten)]
    pub dataset: DatasetArgs,
    /// Where to mount [default: <mount-root>/<namespace>/<name>].
    #[arg(long)]
    pub mountpoint: Option<PathBuf>,
    /// The mount point is a volume mounted there for this client (a FUSE sidecar's emptyDir,
    /// shared with the application by mount propagation): mount over it, and after a restart
    /// of the whole sidecar over the dead mount the last one left, so the application sees
    /// the Dataset again. Without it, anything already mounted there is refused.
    #[arg(long)]
    pub mountpoint_is_volume: bool,
    #[arg(long, default_value = "/mnt/cistern", env = "CISTERN_MOUNT_ROOT")]
    pub mount_root: PathBuf,
    /// Where the master's socket and the PID files are [default: /run/cistern/<ns>-<name>].
    #[arg(long)]
    pub run_dir: Option<PathBuf>,
    /// The master: `unix:/path.sock` or `HOST:PORT` [default: unix:<run-dir>/master.sock].
    #[arg(long)]
    pub master: Option<String>,
    /// Threads answering FUSE requests.
    #[arg(long, default_value_t = 8)]
    pub threads: usize,
    #[command(flatten)]
    pub credentials: crate::credentials::CredentialsArgs,
    /// Mount and serve in this one process (no supervisor; a crash leaves a dead mount).
    #[arg(long, conflicts_with_all = ["daemon", "upgrade"])]
    pub standalone: bool,
    /// Serve the connection handed over as --fuse-fd (started by the supervisor).
    #[arg(long, requires = "fuse_fd", hide = true)]
    pub daemon: bool,
    #[arg(long, hide = true)]
    pub fuse_fd: Option<RawFd>,
    /// The supervisor's table of open files, for passthrough (handed to daemons).
    #[arg(long, hide = true)]
    pub open_table_fd: Option<RawFd>,
    /// Read fully cached files through the daemon instead of handing them to the kernel
    /// (FUSE passthrough, on by default where the kernel offers it).
    #[arg(long, env = "CISTERN_NO_PASSTHROUGH", value_parser = clap::builder::FalseyValueParser::new())]
    pub no_passthrough: bool,
    /// Replace the running daemon of this Dataset with the binary now installed (no request
    /// fails), then exit.
    #[arg(long)]
    pub upgrade: bool,
}

/// How often the client asks the master which workers are live.
/// The descriptor numbers a daemon finds the connection and the open-file table at.
const DAEMON_FD: RawFd = 3;
const TABLE_FD: RawFd = 4;

struct Target {
    plan: cistern_api::DatasetPlan,
    run_dir: PathBuf,
    masters: Vec<Address>,
    mountpoint: PathBuf,
}

fn target(args: &FuseArgs) -> Result<Target> {
    // Only the standalone mode reads the UFS itself and needs its credentials.
    let plan = if args.standalone { args.dataset.plan()? } else { args.dataset.plan_without_credentials()? };
    let run_dir = args.run_dir.clone().unwrap_or_else(|| default_run_dir(&plan));
    let masters = super::master_addresses(args.master.as_deref(), &plan, &run_dir)?;
    let mountpoint = args.mountpoint.clone().unwrap_or_else(|| args.mount_root.join(&plan.namespace).join(&plan.name));
    // The client's certificate, for a master and workers reached over TCP.
    crate::credentials::install_tls(&args.credentials.dir(&run_dir), cistern_rpc::tls::Role::Client)?;
    Ok(Target { plan, run_dir, masters, mountpoint })
}

pub fn run(args: FuseArgs, log_level: &str) -> Result<()> {
    let t = target(&args)?;
    if args.upgrade {
        return upgrade(&t.run_dir);
    }
    if args.daemon {
        let fd = args.fuse_fd.expect("clap requires --fuse-fd with --daemon");
        return daemon(&args, &t, fd);
    }
    if args.standalone {
        return standalone(&args, &t);
    }
    supervise(&args, &t, log_level)
}

fn file_system(t: &Target, client: Arc<Client>, rt: &tokio::runtime::Runtime) -> CisternFs {
    let ttl = if t.plan.auto_sync { t.plan.sync_interval } else { Duration::from_secs(3600) };
    // The daemon keeps entries as long as the kernel may: no staler than the mount already is.
    client.set_entry_ttl(ttl);
    CisternFs::new(client, rt.handle().clone(), ttl)
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().enable_all().worker_threads(4).build()?)
}

fn standalone(args: &FuseArgs, t: &Target) -> Result<()> {
    let rt = runtime()?;
    let client = connect(&rt, &t.masters, None, Some(&t.run_dir))?;
    let created = prepare_mountpoint(&t.mountpoint, &fsname(&t.plan), args.mountpoint_is_volume)?;
    let mount = FuseMount::mount(&t.mountpoint, &fsname(&t.plan), file_system(t, client, &rt), args.threads)
        .with_context(|| format!("cannot mount {}", t.mountpoint.display()))?;
    tracing::info!("mounted {} (master {})", t.mountpoint.display(), cistern_rpc::masters::join(&t.masters));
    rt.block_on(super::stop_requested());
    tracing::info!("unmounting {}", t.mountpoint.display());
    let result = mount.unmount().with_context(|| format!("cannot unmount {}", t.mountpoint.display()));
    if created {
        let _ = std::fs::remove_dir(&t.mountpoint);
    }
    rt.shutdown_timeout(Duration::from_secs(2));
    result
}

fn daemon(args: &FuseArgs, t: &Target, fd: RawFd) -> Result<()> {
    // SAFETY: the supervisor put a dup of the mount's /dev/fuse descriptor at this number for
    // this process alone.
    let file = unsafe { std::fs::File::from_raw_fd(fd) };
    let rt = runtime()?;
    // Requests wait in the kernel until the threads below start reading.
    let client = connect(&rt, &t.masters, None, Some(&t.run_dir))?;
    let mut fs = file_system(t, client, &rt);
    if let Some(table) = args.open_table_fd {
        // SAFETY: as above, a descriptor the supervisor placed for this process.
        let table = unsafe { std::fs::File::from_raw_fd(table) };
        fs = fs.with_passthrough(Passthrough::new(file.try_clone()?, table).context("cannot read the open-file table")?);
    }
    let mount = FuseMount::adopt(file, &fsname(&t.plan), fs, args.threads)
        .context("cannot serve the FUSE connection")?;
    tracing::info!("serving {} (master {})", t.mountpoint.display(), cistern_rpc::masters::join(&t.masters));
    rt.block_on(super::stop_requested());
    // Finish what the threads hold; what is queued waits for the next daemon.
    mount.unmount()?;
    tracing::info!("daemon stopped; the mount stays with its supervisor");
    Ok(())
}

static STOP: AtomicBool = AtomicBool::new(false);
static UPGRADE: AtomicBool = AtomicBool::new(false);
static DAEMON_PID: AtomicI32 = AtomicI32::new(0);
/// The supervisor is PID 1 of its PID namespace: a container's first process (a FUSE sidecar).
static PID_ONE: AtomicBool = AtomicBool::new(false);

/// What a signal asks of the supervisor. SIGUSR1: replace the daemon. SIGINT, SIGTERM: stop,
/// unmount and exit; except a SIGTERM to PID 1 of a container from a process inside it (the
/// seed's `kill 1` in the sidecar), which only replaces the daemon, so the application keeps
/// its mount. The kernel names the sender's PID as seen from the receiver's namespace, and a
/// sender outside it (the kubelet stopping the pod, through the container runtime) shows as
/// 0: that SIGTERM ends the sidecar, so a Job's pod completes.
fn asks_to_stop(sig: libc::c_int, sender: libc::pid_t, pid_one: bool) -> bool {
    match sig {
        libc::SIGUSR1 => false,
        libc::SIGTERM if pid_one && sender != 0 => false,
        _ => true,
    }
}

extern "C" fn on_signal(sig: libc::c_int, info: *mut libc::siginfo_t, _context: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo to an SA_SIGINFO handler; si_pid is set for
    // signals sent by kill(2), and reading it is a plain load.
    let sender = if info.is_null() { 0 } else { unsafe { (*info).si_pid() } };
    if asks_to_stop(sig, sender, PID_ONE.load(Ordering::Relaxed)) {
        STOP.store(true, Ordering::Relaxed);
    } else {
        UPGRADE.store(true, Ordering::Relaxed);
    }
    let pid = DAEMON_PID.load(Ordering::Relaxed);
    if pid > 0 {
        // SAFETY: kill(2) is async-signal-safe; the daemon finishes its requests and exits.
        unsafe { libc::kill(pid, libc::SIGTERM) };
    }
}

fn supervise(args: &FuseArgs, t: &Target, log_level: &str) -> Result<()> {
    std::fs::create_dir_all(&t.run_dir).with_context(|| format!("cannot create {}", t.run_dir.display()))?;
    let exe = std::env::current_exe().context("cannot find the cistern binary to run the FUSE daemon")?;
    let created = prepare_mountpoint(&t.mountpoint, &fsname(&t.plan), args.mountpoint_is_volume)?;
    let holder = MountHolder::mount(&t.mountpoint, &fsname(&t.plan)).with_context(|| format!("cannot mount {}", t.mountpoint.display()))?;
    std::fs::write(t.run_dir.join("fuse-supervisor.pid"), format!("{}\n", std::process::id()))?;
    // Which inodes the kernel holds open, in which mode: outlives every daemon.
    let table = if holder.passthrough() && !args.no_passthrough { Some(table_memfd().context("cannot create the open-file table")?) } else { None };
    tracing::info!(passthrough = table.is_some(), "mounted {}", t.mountpoint.display());
    PID_ONE.store(std::process::id() == 1, Ordering::Relaxed);
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGUSR1] {
        // SAFETY: the handler only touches atomics and calls kill(2); the sigaction struct is
        // fully initialised (zeroed, then the handler, flags and an empty mask).
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_signal as *const () as libc::sighandler_t;
            action.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(sig, &action, std::ptr::null_mut());
        }
    }
    let mut daemon_args: Vec<OsString> = vec!["fuse".into(), "--daemon".into(), "--log-level".into(), log_level.into()];
    daemon_args.extend(args.dataset.to_args());
    daemon_args.extend([
        "--run-dir".into(),
        t.run_dir.clone().into(),
        "--master".into(),
        cistern_rpc::masters::join(&t.masters).into(),
        "--mountpoint".into(),
        t.mountpoint.clone().into(),
        "--threads".into(),
        args.threads.to_string().into(),
        "--fuse-fd".into(),
        DAEMON_FD.to_string().into(),
        "--credentials".into(),
        args.credentials.dir(&t.run_dir).into(),
    ]);
    if table.is_some() {
        daemon_args.extend(["--open-table-fd".into(), TABLE_FD.to_string().into()]);
    }
    let mut fds = vec![(holder.fd(), DAEMON_FD)];
    fds.extend(table.as_ref().map(|t| (t.as_raw_fd(), TABLE_FD)));
    let mut backoff = Duration::ZERO;
    let mut first = true;
    let result = loop {
        let started = Instant::now();
        let mut child = match spawn_daemon(&exe, &daemon_args, &fds) {
            Ok(c) => c,
            Err(e) => break Err(e),
        };
        DAEMON_PID.store(child.id() as i32, Ordering::Relaxed);
        let _ = std::fs::write(t.run_dir.join("fuse.pid"), format!("{}\n", child.id()));
        if STOP.load(Ordering::Relaxed) {
            // SAFETY: kill(2) of our own child; the stop came while it was being started.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        }
        if std::mem::take(&mut first) {
            let mp = t.mountpoint.clone();
            std::thread::spawn(move || cistern_fuse::mount::tune_readahead(&mp));
        }
        let status = child.wait().context("waiting for the FUSE daemon")?;
        DAEMON_PID.store(0, Ordering::Relaxed);
        if STOP.load(Ordering::Relaxed) {
            break Ok(());
        }
        if UPGRADE.swap(false, Ordering::Relaxed) {
            tracing::info!("FUSE daemon replaced (upgrade) on SIGUSR1, or on SIGTERM to PID 1 from inside the container: {status}");
            backoff = Duration::ZERO;
            continue;
        }
        // At once after a daemon is killed (SIGKILL, OOM, a fault) or crashes after serving a
        // while; with a growing wait when it keeps failing at start (a bad binary, arguments).
        use std::os::unix::process::ExitStatusExt;
        backoff = if status.signal().is_some() || started.elapsed() > Duration::from_secs(1) {
            Duration::ZERO
        } else {
            (backoff * 2).clamp(Duration::from_millis(100), Duration::from_secs(5))
        };
        tracing::warn!("FUSE daemon died ({status}); a new one adopts the mount in {backoff:?}");
        std::thread::sleep(backoff);
    };
    let _ = std::fs::remove_file(t.run_dir.join("fuse.pid"));
    let _ = std::fs::remove_file(t.run_dir.join("fuse-supervisor.pid"));
    tracing::info!("unmounting {}", t.mountpoint.display());
    let unmounted = holder.unmount().with_context(|| format!("cannot unmount {}", t.mountpoint.display()));
    if created {
        let _ = std::fs::remove_dir(&t.mountpoint);
    }
    result.and(unmounted)
}

/// Starts a daemon with dups of `fds` (ours → the number it expects); it dies with us.
fn spawn_daemon(exe: &Path, args: &[OsString], fds: &[(RawFd, RawFd)]) -> Result<std::process::Child> {
    let mut cmd = Command::new(exe);
    cmd.args(args);
    let parent = std::process::id() as libc::pid_t;
    // Fixed-size: nothing may allocate between fork and exec.
    let mut places = [(-1, -1); 2];
    assert!(fds.len() <= places.len(), "a daemon takes at most {} descriptors", places.len());
    places[..fds.len()].copy_from_slice(fds);
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            // First move every source above the targets (close-on-exec copies), so placing
            // one never overwrites another; dup2 then clears close-on-exec on the target.
            let mut moved = [-1; 2];
            for (i, &(from, _)) in places.iter().enumerate().filter(|(_, p)| p.0 >= 0) {
                moved[i] = libc::fcntl(from, libc::F_DUPFD_CLOEXEC, 10);
                if moved[i] < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            for (i, &(_, to)) in places.iter().enumerate().filter(|(_, p)| p.0 >= 0) {
                if libc::dup2(moved[i], to) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
    cmd.spawn().context("cannot start the FUSE daemon")
}

/// `cistern fuse --upgrade`: asks the supervisor to replace its daemon.
fn upgrade(run_dir: &Path) -> Result<()> {
    let path = run_dir.join("fuse-supervisor.pid");
    let text = std::fs::read_to_string(&path).with_context(|| format!("{}: no FUSE supervisor runs for this Dataset", path.display()))?;
    let pid: i32 = text.trim().parse().with_context(|| format!("{}: not a PID", path.display()))?;
    let old = std::fs::read_to_string(run_dir.join("fuse.pid")).unwrap_or_default();
    // SAFETY: kill(2) with a PID read from the run directory.
    if unsafe { libc::kill(pid, libc::SIGUSR1) } != 0 {
        bail!("cannot signal the FUSE supervisor (pid {pid}): {}", std::io::Error::last_os_error());
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let now = std::fs::read_to_string(run_dir.join("fuse.pid")).unwrap_or_default();
        if !now.trim().is_empty() && now != old {
            println!("FUSE daemon replaced: pid {} → {}", old.trim(), now.trim());
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    bail!("the FUSE daemon was not replaced within 60s; see the supervisor's log")
}

#[cfg(test)]
mod tests {
    use super::asks_to_stop;

    #[test]
    fn a_sigterm_from_inside_the_container_replaces_the_daemon_and_one_from_outside_stops() {
        assert!(!asks_to_stop(libc::SIGTERM, 7, true), "kill 1 inside the sidecar");
        assert!(asks_to_stop(libc::SIGTERM, 0, true), "the kubelet stopping the pod");
        assert!(asks_to_stop(libc::SIGTERM, 7, false), "an ordinary node's supervisor");
        assert!(asks_to_stop(libc::SIGINT, 7, true));
        assert!(!asks_to_stop(libc::SIGUSR1, 0, false));
    }
}
