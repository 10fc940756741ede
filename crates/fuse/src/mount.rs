//! Mounting the file system and serving the FUSE connection with a pool of threads.
//!
//! Each thread reads requests from its own dup of the `/dev/fuse` descriptor (`new_channel`)
//! and answers them through the shared [`Server`]. Unmounting detaches the mount, wakes the
//! threads and joins them.

use crate::fs::CisternFs;
use fuse_backend_rs::api::server::Server;
use fuse_backend_rs::transport::FuseSession;
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

/// The kernel's readahead window on the mount. FUSE starts at 128 KiB, which caps every read
/// request at 128 KiB; with 4 MiB the kernel sends 1 MiB requests (the negotiated max_pages)
/// and keeps several in flight, as JuiceFS and mountpoint-s3 also do.
const READAHEAD_KIB: u32 = 4096;

/// Raises the mount's readahead once its INIT is done. Best effort: without it reads are only
/// smaller.
fn tune_readahead(mountpoint: &Path, kib: u32) {
    use std::os::unix::fs::MetadataExt;
    // A stat waits for the kernel's INIT to be answered, which sets the window we replace.
    let Ok(meta) = std::fs::metadata(mountpoint) else { return };
    let dev = meta.dev();
    let bdi = format!("/sys/class/bdi/{}:{}/read_ahead_kb", libc::major(dev), libc::minor(dev));
    if let Err(e) = std::fs::write(&bdi, kib.to_string()) {
        tracing::debug!(path = %bdi, error = %e, "cannot raise the readahead window");
    }
}

pub struct FuseMount {
    session: FuseSession,
    stopping: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl FuseMount {
    /// Mounts `fs` read-only at `mountpoint` and serves it with `threads` threads.
    pub fn mount(mountpoint: &Path, fsname: &str, fs: CisternFs, threads: usize) -> io::Result<FuseMount> {
        let mut session = FuseSession::new(mountpoint, fsname, "cistern", true).map_err(to_io)?;
        session.set_allow_other(true);
        session.mount().map_err(to_io)?;
        let server = Arc::new(Server::new(fs));
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
        let mount = FuseMount { session, stopping, threads: handles };
        tune_readahead(mountpoint, READAHEAD_KIB);
        Ok(mount)
    }

    pub fn mountpoint(&self) -> &Path {
        self.session.mountpoint()
    }

    /// Unmounts (lazily, so a busy mount does not block shutdown) and stops the threads.
    pub fn unmount(mut self) -> io::Result<()> {
        self.stopping.store(true, Ordering::Relaxed);
        let result = self.session.umount().map_err(to_io);
        let _ = self.session.wake();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        result
    }
}

fn to_io(e: fuse_backend_rs::transport::Error) -> io::Error {
    io::Error::other(e.to_string())
}
