//! Mounting the file system and serving its FUSE connection with a pool of threads.
//!
//! Two ways to run:
//! - [`FuseMount::mount`]: one process mounts and serves; when it dies the mount is dead
//!   (the fallback, for kernels without FUSE_NOTIFY_RESEND).
//! - [`MountHolder`] + [`FuseMount::adopt`]: a supervisor mounts and only holds the
//!   connection; a daemon serves the connection it is handed, and a new daemon adopts the same
//!   connection when one dies, without unmounting (see `cistern fuse` and the README).
//!
//! Each serving thread reads requests from its own dup of the `/dev/fuse` descriptor
//! (`new_channel`; a `FUSE_DEV_IOC_CLONE` clone would die with its daemon and fail its
//! requests) and answers them through the shared [`Server`].

use crate::fs::{wanted_options, CisternFs};
use crate::init::{answer_init, Negotiated};
use fuse_backend_rs::api::server::Server;
use fuse_backend_rs::transport::{FuseDevWriter, FuseSession};
use std::fs::File;
use std::io;
use std::mem::ManuallyDrop;
use std::os::fd::{AsRawFd, RawFd};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// The kernel's readahead window on the mount. FUSE starts at 128 KiB, which caps every read
/// request at 128 KiB; with 4 MiB the kernel sends 1 MiB requests (the negotiated max_pages)
/// and keeps several in flight, as JuiceFS and mountpoint-s3 also do.
const READAHEAD_KIB: u32 = 4096;

/// Raises the mount's readahead once its INIT is done. Best effort: without it reads are only
/// smaller. Blocks until a daemon has answered INIT.
pub fn tune_readahead(mountpoint: &Path) {
    use std::os::unix::fs::MetadataExt;
    // A stat waits for the kernel's INIT to be answered, which sets the window we replace.
    let Ok(meta) = std::fs::metadata(mountpoint) else { return };
    let dev = meta.dev();
    let bdi = format!("/sys/class/bdi/{}:{}/read_ahead_kb", libc::major(dev), libc::minor(dev));
    if let Err(e) = std::fs::write(&bdi, READAHEAD_KIB.to_string()) {
        tracing::debug!(path = %bdi, error = %e, "cannot raise the readahead window");
    }
}

/// A mount whose connection this process holds but does not serve (the FUSE supervisor).
/// Dropping it unmounts.
pub struct MountHolder {
    session: FuseSession,
    negotiated: Negotiated,
}

/// How long the kernel may take to send INIT after mounting.
const INIT_TIMEOUT: Duration = Duration::from_secs(10);

impl MountHolder {
    /// Mounts and answers the kernel's INIT (see [`crate::init`]), so daemons only adopt.
    pub fn mount(mountpoint: &Path, fsname: &str) -> io::Result<MountHolder> {
        let mut session = FuseSession::new(mountpoint, fsname, "cistern", true).map_err(to_io)?;
        session.set_allow_other(true);
        session.mount().map_err(to_io)?;
        let fd = session.get_fuse_file().map(|f| f.as_raw_fd()).ok_or_else(|| io::Error::other("mounted without a device file"))?;
        let negotiated = match answer_init(fd, wanted_options(), INIT_TIMEOUT) {
            Ok(n) => n,
            Err(e) => {
                let _ = session.umount();
                return Err(e);
            }
        };
        Ok(MountHolder { session, negotiated })
    }

    /// True when files may be opened in passthrough mode on this connection.
    pub fn passthrough(&self) -> bool {
        self.negotiated.passthrough
    }

    /// The `/dev/fuse` descriptor of the mount, to hand to a daemon.
    pub fn fd(&self) -> RawFd {
        self.session.get_fuse_file().map(|f| f.as_raw_fd()).expect("a mounted session has its device file")
    }

    pub fn mountpoint(&self) -> &Path {
        self.session.mountpoint()
    }

    /// Unmounts (lazily, so a busy mount does not block).
    pub fn unmount(mut self) -> io::Result<()> {
        self.session.umount().map_err(to_io)
    }
}

pub struct FuseMount {
    /// Not dropped by an adopting daemon: dropping a session unmounts, and the mount belongs to
    /// the supervisor.
    session: ManuallyDrop<FuseSession>,
    owned: bool,
    stopping: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl FuseMount {
    /// Mounts `fs` read-only at `mountpoint` and serves it with `threads` threads.
    pub fn mount(mountpoint: &Path, fsname: &str, fs: CisternFs, threads: usize) -> io::Result<FuseMount> {
        let mut session = FuseSession::new(mountpoint, fsname, "cistern", true).map_err(to_io)?;
        session.set_allow_other(true);
        session.mount().map_err(to_io)?;
        let mount = FuseMount::serve(session, Arc::new(Server::new(fs)), threads, true)?;
        tune_readahead(mountpoint);
        Ok(mount)
    }

    /// Serves a connection mounted by another process (`fuse_fd`, a dup of its descriptor).
    ///
    /// Before any thread reads, the kernel is asked to send again the requests a previous
    /// daemon had read but not answered (FUSE_NOTIFY_RESEND, Linux 6.9+): without it their
    /// callers would wait forever; after threads start, a request could be answered twice. The
    /// connection is already initialized, so no INIT comes and `FileSystem::init` is not
    /// called: the file system keeps no state that `init` sets up.
    pub fn adopt(fuse_fd: File, fsname: &str, fs: CisternFs, threads: usize) -> io::Result<FuseMount> {
        // Any existing directory: the session is never mounted from here, and resolving the
        // (blocked) mount path itself would wait on the daemon being started.
        let mut session = FuseSession::new(Path::new("/"), fsname, "cistern", true).map_err(to_io)?;
        let fd = fuse_fd.as_raw_fd();
        session.set_fuse_file(fuse_fd);
        let server = Arc::new(Server::new(fs));
        let mut buf = vec![0u8; 4096];
        let writer = FuseDevWriter::<()>::new(fd, &mut buf).map_err(|e| io::Error::other(e.to_string()))?;
        if let Err(e) = server.notify_resend(writer) {
            // Also what a connection not yet initialized answers: then nothing was in flight.
            tracing::info!("FUSE_NOTIFY_RESEND refused ({e}): a new connection, or a kernel before 6.9");
        }
        FuseMount::serve(session, server, threads, false)
    }

    fn serve(session: FuseSession, server: Arc<Server<CisternFs>>, threads: usize, owned: bool) -> io::Result<FuseMount> {
        let stopping = Arc::new(AtomicBool::new(false));
        let mut handles = Vec::new();
        for i in 0..threads.max(1) {
            let mut channel = session.new_channel().map_err(to_io)?;
            let server = server.clone();
            let stopping = stopping.clone();
            let h = std::thread::Builder::new().name(format!("fuse-{i}")).spawn(move || loop {
                match channel.get_request() {
                    Ok(Some((reader, writer))) => {
                        if let Err(e) = server.handle_message(reader, writer.into(), None, None) {
                            tracing::debug!(error = %e, "FUSE request failed");
                        }
                    }
                    Ok(None) => break, // woken to exit, or unmounted
                    Err(_) if stopping.load(Ordering::Relaxed) => break,
                    Err(e) => {
                        tracing::warn!(error = %e, "FUSE channel closed");
                        break;
                    }
                }
            })?;
            handles.push(h);
        }
        Ok(FuseMount { session: ManuallyDrop::new(session), owned, stopping, threads: handles })
    }

    pub fn mountpoint(&self) -> &Path {
        self.session.mountpoint()
    }

    /// Stops serving: the threads finish the requests they hold and exit; requests not yet
    /// read stay queued in the kernel for the next daemon. A mount this process made is
    /// unmounted (lazily, so a busy mount does not block shutdown); an adopted one is left to
    /// its supervisor.
    pub fn unmount(mut self) -> io::Result<()> {
        self.stopping.store(true, Ordering::Relaxed);
        let result = if self.owned { self.session.umount().map_err(to_io) } else { Ok(()) };
        let _ = self.session.wake();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        if self.owned {
            // SAFETY: dropped once, here; an adopted session is deliberately leaked instead.
            unsafe { ManuallyDrop::drop(&mut self.session) };
        }
        result
    }
}

fn to_io(e: fuse_backend_rs::transport::Error) -> io::Error {
    io::Error::other(e.to_string())
}
