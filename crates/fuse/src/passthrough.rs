//! FUSE passthrough: a file wholly cached on this node is opened with FOPEN_PASSTHROUGH and
//! its cache file as the backing file, so the kernel reads the cache file itself and the
//! daemon sees no READ at all (Linux 6.9+, CAP_SYS_ADMIN; negotiated in [`crate::init`]).
//! This is what Alluxio calls a short-circuit read, done by the kernel.
//!
//! The kernel's rules shape this module:
//! - an inode is either in passthrough mode (every open file of it uses the same backing
//!   file) or in cached mode (normal reads); an open asking for the other mode fails with
//!   EIO. So the mode of an inode is decided by its first open and kept until its last
//!   release: a file that becomes cached while someone reads it normally is read normally
//!   until every such open is closed;
//! - a backing id lives as long as the connection, not the daemon. The [`OpenTable`] of
//!   inode → (mode, backing id, opens) therefore lives in a memfd that the supervisor owns
//!   and hands to each daemon, so a new daemon knows the modes and ids the kernel holds.
//!
//! The worker never punches holes in a complete file (it unlinks it whole), so a backing file
//! keeps its bytes for as long as the kernel holds it.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// `FOPEN_PASSTHROUGH`: the open's reply names a backing file.
pub const FOPEN_PASSTHROUGH: u32 = 1 << 7;
/// `_IOW(229, 1, struct fuse_backing_map)` and `_IOW(229, 2, uint32_t)`.
const FUSE_DEV_IOC_BACKING_OPEN: libc::c_ulong = 0x4010_e501;
const FUSE_DEV_IOC_BACKING_CLOSE: libc::c_ulong = 0x4004_e502;

#[repr(C)]
struct BackingMap {
    fd: i32,
    flags: u32,
    padding: u64,
}

/// How an open of a file is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The kernel reads the backing file with this id.
    Passthrough(u32),
    /// Reads come to the daemon.
    Cached,
}

pub struct Passthrough {
    /// The daemon's copy of the `/dev/fuse` descriptor, for the backing ioctls.
    device: File,
    table: Mutex<OpenTable>,
    refused: AtomicBool,
}

impl Passthrough {
    /// `device`: a descriptor of the connection; `table`: the supervisor's memfd.
    pub fn new(device: File, table: File) -> io::Result<Passthrough> {
        let table = OpenTable::load(table)?;
        if !table.entries.is_empty() {
            tracing::info!(inodes = table.entries.len(), "adopted the open files of the previous daemon");
        }
        Ok(Passthrough { device, table: Mutex::new(table), refused: AtomicBool::new(false) })
    }

    /// Decides how an open of `ino` is served. The mode of an inode with open files is kept;
    /// otherwise `find` gives a read-only descriptor of its complete cache file on this node
    /// (from the worker's descriptor socket), if any.
    pub fn open(&self, ino: u64, find: impl FnOnce() -> Option<File>) -> Mode {
        if let Some(mode) = self.table.lock().expect("table lock").join(ino) {
            return mode;
        }
        // Outside the lock: asking the worker must not hold up other opens.
        let backing = find();
        let mut table = self.table.lock().expect("table lock");
        if let Some(mode) = table.join(ino) {
            return mode; // another open decided meanwhile
        }
        let mode = match backing.map(|f| self.register(&f)) {
            Some(Ok(id)) => Mode::Passthrough(id),
            Some(Err(e)) => {
                if !self.refused.swap(true, Ordering::Relaxed) {
                    tracing::warn!(error = %e, "the kernel refused a passthrough backing file; reading cached files normally");
                }
                Mode::Cached
            }
            None => Mode::Cached,
        };
        table.insert(ino, mode);
        mode
    }

    /// An open file of `ino` was closed; the last close forgets the mode and its backing file.
    pub fn release(&self, ino: u64) {
        let mut table = self.table.lock().expect("table lock");
        if let Some(Mode::Passthrough(id)) = table.leave(ino) {
            // SAFETY: ioctl on our device descriptor with a pointer to a live u32.
            let r = unsafe { libc::ioctl(self.device.as_raw_fd(), FUSE_DEV_IOC_BACKING_CLOSE, &id) };
            if r < 0 {
                tracing::debug!(id, error = %io::Error::last_os_error(), "closing a backing file");
            }
        }
    }

    fn register(&self, file: &File) -> io::Result<u32> {
        let map = BackingMap { fd: file.as_raw_fd(), flags: 0, padding: 0 };
        // SAFETY: ioctl on our device descriptor with a pointer to a live struct of the
        // kernel's layout; the kernel takes its own reference to the file.
        let id = unsafe { libc::ioctl(self.device.as_raw_fd(), FUSE_DEV_IOC_BACKING_OPEN, &map) };
        if id <= 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(id as u32)
    }
}

/// Inode → (mode, opens), one 16-byte slot per inode in a file: `ino: u64`, `backing: u32`
/// (0 for cached mode), `opens: u32`. Each change is one `pwrite` of one slot, which a
/// SIGKILL cannot tear.
pub struct OpenTable {
    file: File,
    entries: HashMap<u64, Slot>,
    free: Vec<u64>,
    slots: u64,
}

#[derive(Clone, Copy)]
struct Slot {
    index: u64,
    backing: u32,
    opens: u32,
}

const SLOT: u64 = 16;

impl OpenTable {
    pub fn load(file: File) -> io::Result<OpenTable> {
        let len = file.metadata()?.len();
        let mut bytes = vec![0u8; len as usize];
        file.read_exact_at(&mut bytes, 0)?;
        let mut table = OpenTable { file, entries: HashMap::new(), free: Vec::new(), slots: len / SLOT };
        for (index, s) in bytes.chunks_exact(SLOT as usize).enumerate() {
            let ino = u64::from_ne_bytes(s[0..8].try_into().expect("8 bytes"));
            let backing = u32::from_ne_bytes(s[8..12].try_into().expect("4 bytes"));
            let opens = u32::from_ne_bytes(s[12..16].try_into().expect("4 bytes"));
            if ino == 0 || opens == 0 {
                table.free.push(index as u64);
            } else {
                table.entries.insert(ino, Slot { index: index as u64, backing, opens });
            }
        }
        Ok(table)
    }

    /// One more open of an inode that already has a mode.
    fn join(&mut self, ino: u64) -> Option<Mode> {
        let slot = self.entries.get_mut(&ino)?;
        slot.opens += 1;
        let slot = *slot;
        self.write(ino, slot);
        Some(mode_of(slot.backing))
    }

    fn insert(&mut self, ino: u64, mode: Mode) {
        let index = self.free.pop().unwrap_or_else(|| {
            self.slots += 1;
            self.slots - 1
        });
        let backing = match mode {
            Mode::Passthrough(id) => id,
            Mode::Cached => 0,
        };
        let slot = Slot { index, backing, opens: 1 };
        self.entries.insert(ino, slot);
        self.write(ino, slot);
    }

    /// One open fewer; the inode's mode when that was its last.
    fn leave(&mut self, ino: u64) -> Option<Mode> {
        let slot = self.entries.get_mut(&ino)?;
        slot.opens = slot.opens.saturating_sub(1);
        let slot = *slot;
        if slot.opens > 0 {
            self.write(ino, slot);
            return None;
        }
        self.entries.remove(&ino);
        self.write(0, Slot { opens: 0, backing: 0, ..slot });
        self.free.push(slot.index);
        Some(mode_of(slot.backing))
    }

    fn write(&self, ino: u64, slot: Slot) {
        let mut b = [0u8; SLOT as usize];
        b[0..8].copy_from_slice(&ino.to_ne_bytes());
        b[8..12].copy_from_slice(&slot.backing.to_ne_bytes());
        b[12..16].copy_from_slice(&slot.opens.to_ne_bytes());
        if let Err(e) = self.file.write_all_at(&b, slot.index * SLOT) {
            tracing::warn!(error = %e, "cannot record an open file for the next daemon");
        }
    }
}

fn mode_of(backing: u32) -> Mode {
    if backing == 0 {
        Mode::Cached
    } else {
        Mode::Passthrough(backing)
    }
}

/// A memfd for the [`OpenTable`], created by the supervisor (close-on-exec: it is handed to
/// daemons explicitly).
pub fn table_memfd() -> io::Result<File> {
    use std::os::fd::FromRawFd;
    // SAFETY: memfd_create with a NUL-terminated name; the new descriptor is ours alone.
    let fd = unsafe { libc::memfd_create(c"cistern-open-files".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor owned by nobody else.
    Ok(unsafe { File::from_raw_fd(fd) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_survives_its_reader_and_reuses_slots() {
        let memfd = table_memfd().unwrap();
        let mut t = OpenTable::load(memfd.try_clone().unwrap()).unwrap();
        t.insert(10, Mode::Passthrough(3));
        t.insert(11, Mode::Cached);
        assert_eq!(t.join(10), Some(Mode::Passthrough(3)));
        assert_eq!(t.leave(11), Some(Mode::Cached), "last close of 11");
        // A new daemon reads what the old one left.
        let mut t2 = OpenTable::load(memfd.try_clone().unwrap()).unwrap();
        assert_eq!(t2.entries.len(), 1);
        assert_eq!(t2.leave(10), None, "10 still has one open");
        assert_eq!(t2.leave(10), Some(Mode::Passthrough(3)));
        t2.insert(12, Mode::Cached);
        assert_eq!(t2.slots, 2, "freed slots are reused");
        assert_eq!(t2.join(99), None, "no mode for an inode without opens");
    }
}
