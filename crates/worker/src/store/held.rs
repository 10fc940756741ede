//! Files evicted while a reader still holds them open.
//!
//! A complete cache file is unlinked when evicted (see the module doc of [`super`]), but a
//! FUSE passthrough backing file or a short-circuit reader's descriptor keeps its pages
//! allocated until the last close, and tmpfs and the kubelet count those pages. So an
//! evicted file that someone else still holds stays charged to the tier's quota until they
//! let go.
//!
//! Who holds a file is asked of the kernel, not tracked: a write lease (`F_SETLEASE`
//! `F_WRLCK`) is granted only when no other open file description of the inode exists, the
//! kernel's own passthrough opens included. The worker's own descriptor of the unlinked file
//! is kept for that question; closing it once the lease is granted frees the space. Where
//! leases are unavailable (disabled by `fs.leases-enable`, or a file system without them), a
//! file counts as released at eviction, as before, and the rendered `emptyDir` headroom
//! covers it.

use super::Index;
use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::os::unix::io::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often held files are asked about at most (one `fcntl` each).
const RECHECK: Duration = Duration::from_millis(50);

/// An evicted, unlinked cache file that another process still had open.
pub(super) struct HeldFile {
    file: Arc<File>,
    /// Its pages on disk when it was evicted: what it still costs.
    bytes: u64,
}

#[derive(Default)]
pub(super) struct Held {
    files: Vec<HeldFile>,
    /// Sum of `files[].bytes`: counted against the quota with data and overhead.
    pub(super) bytes: u64,
    checked: Option<Instant>,
}

impl Held {
    /// Keeps `file` (just unlinked) charged if another process holds it open.
    pub(super) fn hold_if_open(&mut self, file: Arc<File>) {
        let bytes = file.metadata().map_or(0, |m| m.blocks() * 512);
        if bytes == 0 || !held_by_others(&file) {
            return; // closing ours frees it (or there was nothing to free)
        }
        self.bytes += bytes;
        self.files.push(HeldFile { file, bytes });
    }

    /// Lets go of the files nobody else holds any more (at most every [`RECHECK`]).
    pub(super) fn release(&mut self) {
        if self.files.is_empty() || self.checked.is_some_and(|t| t.elapsed() < RECHECK) {
            return;
        }
        self.checked = Some(Instant::now());
        let mut freed = 0;
        self.files.retain(|h| {
            let keep = held_by_others(&h.file);
            if !keep {
                freed += h.bytes;
            }
            keep
        });
        self.bytes -= freed;
    }

    #[cfg(test)]
    fn count(&self) -> usize {
        self.files.len()
    }
}

impl Index {
    /// Data, the files' own pages, and evicted files still held: all the tier holds on disk.
    pub(super) fn on_disk(&self) -> u64 {
        self.used + self.overhead + self.held.bytes
    }
}

/// True when an open file description of `file`'s inode other than ours exists.
fn held_by_others(file: &File) -> bool {
    const F_SETLEASE: libc::c_int = 1024;
    // SAFETY: fcntl on a valid, owned descriptor with integer arguments.
    let r = unsafe { libc::fcntl(file.as_raw_fd(), F_SETLEASE, libc::F_WRLCK) };
    if r == 0 {
        // SAFETY: as above; drops the lease just taken.
        unsafe { libc::fcntl(file.as_raw_fd(), F_SETLEASE, libc::F_UNLCK) };
        return false;
    }
    let e = std::io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EAGAIN) {
        return true;
    }
    static WARNED: AtomicBool = AtomicBool::new(false);
    if !WARNED.swap(true, Ordering::Relaxed) {
        tracing::warn!(error = %e, "file leases are unavailable: evicted cache files still open elsewhere are not counted against the quota");
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn a_file_is_held_while_another_description_is_open_and_released_after() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let mut ours = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&path).unwrap();
        ours.write_all(&[1u8; 8192]).unwrap();
        let ours = Arc::new(ours);
        let theirs = File::open(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        let mut held = Held::default();
        held.hold_if_open(ours.clone());
        assert_eq!(held.count(), 1);
        assert!(held.bytes >= 8192, "{} bytes charged", held.bytes);
        held.release();
        assert_eq!(held.count(), 1, "still open elsewhere");
        drop(theirs);
        held.checked = None;
        held.release();
        assert_eq!((held.count(), held.bytes), (0, 0));
        // Nobody else: never held at all.
        held.hold_if_open(ours);
        assert_eq!(held.count(), 0);
    }
}
