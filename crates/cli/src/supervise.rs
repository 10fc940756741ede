//! How `cistern up` runs the components: each is a child process of the same binary, started
//! in order (master, workers, FUSE) and waited for until ready, then watched like a
//! StatefulSet controller would: one that dies is started again, with a backoff when it keeps
//! dying. Each child's PID is in `<run-dir>/<name>.pid` for scripts and tests.
//!
//! Children die with `up` (PR_SET_PDEATHSIG), so a killed `up` leaves no orphan holding the
//! metadata store or the cache; its FUSE mount is left dead, and the next `up` takes it down.

use anyhow::{bail, Context, Result};
use std::ffi::OsString;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// When a component counts as started.
pub enum Ready {
    /// Its Unix socket accepts connections.
    Socket(PathBuf),
    /// Its FUSE mount (of this fsname) is live at this path.
    Mount(PathBuf, String),
}

impl Ready {
    fn check(&self) -> bool {
        match self {
            Ready::Socket(p) => std::os::unix::net::UnixStream::connect(p).is_ok(),
            Ready::Mount(p, fsname) => {
                crate::mountpoint::mount_source(p).as_deref() == Some(fsname.as_str()) && std::fs::read_dir(p).is_ok()
            }
        }
    }
}

pub struct ChildSpec {
    /// `master`, `worker-0`, `fuse`: the pid file's name and what logs call it.
    pub name: String,
    /// The subcommand and its arguments.
    pub args: Vec<OsString>,
    pub ready: Ready,
    /// Another program than `cistern` itself (the `juicefs` engine), and environment
    /// variables for it (where secrets go, never in `args`).
    pub program: Option<PathBuf>,
    pub env: Vec<(String, String)>,
    /// The user and group it runs as (`runAs`); `None`: this process's.
    pub user: Option<(u32, u32)>,
}

impl ChildSpec {
    /// A component run by the `cistern` binary itself.
    pub fn cistern(name: String, args: Vec<OsString>, ready: Ready) -> ChildSpec {
        ChildSpec { name, args, ready, program: None, env: Vec::new(), user: None }
    }

    /// The same, run as `user` (uid, gid).
    pub fn as_user(self, user: Option<(u32, u32)>) -> ChildSpec {
        ChildSpec { user, ..self }
    }
}

struct Slot {
    spec: ChildSpec,
    child: Child,
    started: Instant,
    /// The wait before the next restart.
    backoff: Duration,
    restarts: u32,
}

/// A child that ran this long before dying is restarted at once; one that dies sooner waits
/// a backoff that doubles from [`FIRST_BACKOFF`] up to [`MAX_BACKOFF`].
const STABLE_AFTER: Duration = Duration::from_secs(10);
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// How long a component may take to become ready at start.
const START_TIMEOUT: Duration = Duration::from_secs(90);

pub struct Supervisor {
    exe: PathBuf,
    run_dir: PathBuf,
    slots: Vec<Slot>,
}

impl Supervisor {
    pub fn new(run_dir: &Path) -> Result<Supervisor> {
        let exe = std::env::current_exe().context("cannot find the cistern binary to start the components")?;
        Ok(Supervisor { exe, run_dir: run_dir.to_path_buf(), slots: Vec::new() })
    }

    fn spawn(&self, spec: &ChildSpec) -> Result<Child> {
        let mut cmd = Command::new(spec.program.as_ref().unwrap_or(&self.exe));
        cmd.args(&spec.args).env("CISTERN_COMPONENT", &spec.name).envs(spec.env.iter().map(|(k, v)| (k, v)));
        let parent = std::process::id() as libc::pid_t;
        // Another program gets its own process group, so that the helpers it forks (JuiceFS
        // runs a watchdog and a mount process) can be killed with it.
        let own_group = spec.program.is_some();
        if let Some((uid, gid)) = spec.user {
            // std drops root's supplementary groups before it sets the uid.
            cmd.uid(uid).gid(gid);
        }
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                if own_group && libc::setpgid(0, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if libc::getppid() != parent {
                    libc::_exit(1); // up died before the death signal was armed
                }
                Ok(())
            });
        }
        let child = cmd.spawn().with_context(|| format!("cannot start {}", spec.name))?;
        std::fs::write(self.run_dir.join(format!("{}.pid", spec.name)), format!("{}\n", child.id()))
            .with_context(|| format!("cannot write {}.pid in {}", spec.name, self.run_dir.display()))?;
        Ok(child)
    }

    /// Starts a component and waits until it is ready. A component that exits first fails the
    /// start (its own error is on stderr, above ours).
    pub fn start(&mut self, spec: ChildSpec, stop: &AtomicBool) -> Result<()> {
        let mut child = self.spawn(&spec)?;
        let started = Instant::now();
        while !spec.ready.check() {
            if let Some(status) = child.try_wait()? {
                bail!("{} exited while starting ({}); see its error above", spec.name, describe(status));
            }
            if stop.load(Ordering::Relaxed) {
                let _ = child.kill();
                let _ = child.wait();
                bail!("stopped while {} was starting", spec.name);
            }
            if started.elapsed() > START_TIMEOUT {
                let _ = child.kill();
                let _ = child.wait();
                bail!("{} was not ready after {}s", spec.name, START_TIMEOUT.as_secs());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        tracing::info!("{} started (pid {})", spec.name, child.id());
        self.slots.push(Slot { spec, child, started, backoff: Duration::ZERO, restarts: 0 });
        Ok(())
    }

    /// Watches the children until `stop` is set, restarting any that dies.
    pub fn watch(&mut self, stop: &AtomicBool) {
        while !stop.load(Ordering::Relaxed) {
            for i in 0..self.slots.len() {
                if let Err(e) = self.restart_if_dead(i, stop) {
                    tracing::error!("{e:#}");
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn restart_if_dead(&mut self, i: usize, stop: &AtomicBool) -> Result<()> {
        let slot = &mut self.slots[i];
        let Some(status) = slot.child.try_wait()? else { return Ok(()) };
        let ran = slot.started.elapsed();
        slot.backoff = if ran >= STABLE_AFTER { Duration::ZERO } else { (slot.backoff * 2).clamp(FIRST_BACKOFF, MAX_BACKOFF) };
        slot.restarts += 1;
        let (name, backoff, restarts) = (slot.spec.name.clone(), slot.backoff, slot.restarts);
        tracing::warn!("{name} (pid {}) died ({}) after {ran:.1?}; restart {restarts} in {backoff:?}", slot.child.id(), describe(status));
        eprintln!("warning: {name} died ({}); restarting it", describe(status));
        let until = Instant::now() + backoff;
        while Instant::now() < until {
            if stop.load(Ordering::Relaxed) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let slot = &self.slots[i];
        if slot.spec.program.is_some() {
            // What it left behind would serve (or hold) the old mount: gone with the group.
            // SAFETY: killpg(2) on the group our child led.
            unsafe { libc::killpg(slot.child.id() as libc::pid_t, libc::SIGKILL) };
        }
        if let Ready::Mount(path, fsname) = &slot.spec.ready {
            // A mount whose daemon died with the child: a new one cannot stack on it. The
            // kernel aborts it once the last holder of its descriptor is gone.
            // Our own FUSE components take a dead mount down themselves: no wait for them.
            let patience = if slot.spec.program.is_some() { Duration::from_secs(2) } else { Duration::ZERO };
            let until = Instant::now() + patience;
            while !crate::mountpoint::unmount_if_dead(path, fsname)?
                && Instant::now() < until
                && crate::mountpoint::mount_source(path).as_deref() == Some(fsname)
            {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let child = self.spawn(&self.slots[i].spec)?;
        let slot = &mut self.slots[i];
        slot.child = child;
        slot.started = Instant::now();
        Ok(())
    }

    /// Stops the components in reverse order (FUSE first, so the mount goes before the data
    /// behind it): SIGTERM, then SIGKILL for one that has not exited after `grace`.
    pub fn stop(&mut self, grace: Duration) {
        while let Some(mut slot) = self.slots.pop() {
            // SAFETY: kill(2) on our own child.
            unsafe { libc::kill(slot.child.id() as libc::pid_t, libc::SIGTERM) };
            let deadline = Instant::now() + grace;
            loop {
                match slot.child.try_wait() {
                    Ok(Some(_)) | Err(_) => break,
                    Ok(None) if Instant::now() > deadline => {
                        tracing::warn!("{} did not exit within {grace:?} of SIGTERM; killing it", slot.spec.name);
                        let _ = slot.child.kill();
                        let _ = slot.child.wait();
                        break;
                    }
                    Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
            let _ = std::fs::remove_file(self.run_dir.join(format!("{}.pid", slot.spec.name)));
        }
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(10));
    }
}

fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exit status {c}"),
        (_, Some(s)) => format!("killed by signal {s}"),
        _ => status.to_string(),
    }
}
