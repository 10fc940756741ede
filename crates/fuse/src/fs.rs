//! The Dataset as a read-only FUSE file system.
//!
//! Node IDs are derived from the master's inode numbers and file handles carry no state, so a
//! new daemon serving the same connection (see the FUSE issue) understands every ID the kernel
//! holds. A directory's node ID is its inode number; a **file's node ID also names its content
//! version** ([`node_id`]: the inode number in the low 40 bits, 24 bits of the version digest
//! above), so an object that changes on the UFS becomes a new inode to the kernel once the
//! master has seen the change: a new page cache (kept across opens with `KEEP_CACHE`) and a new
//! passthrough backing file, while descriptors opened before keep the old node. A read through
//! an old node whose version is no longer the current one fails with `ESTALE` (the old bytes
//! are no longer the object's), never with bytes of the new version; an open of a stale node
//! fails with `ESTALE` too, which makes the kernel look the name up again.
//! Directory handles index a snapshot taken at `opendir`, so a re-listing in the middle of an
//! `ls` never skips or repeats an entry; a handle a daemon does not know is re-snapshotted.

use crate::passthrough::{Mode, Passthrough, FOPEN_PASSTHROUGH};
use cistern_client::{CacheStats, Client, ClientError};
use cistern_master::{Inode, Kind};
use fuse_backend_rs::abi::fuse_abi::stat64;
use fuse_backend_rs::api::filesystem::{
    Context, DirEntry, Entry, FileSystem, FsOptions, GetxattrReply, ListxattrReply, OpenOptions, ZeroCopyWriter,
};
use std::collections::HashMap;
use std::ffi::CStr;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::runtime::Handle;

/// Block size reported by `stat` and `statfs`: large, so tools read in large chunks.
const IO_BLOCK: u64 = 128 * 1024;

/// Bits of a node ID that hold the master's inode number (a trillion entries per Dataset).
const INO_BITS: u32 = 40;
const INO_MASK: u64 = (1 << INO_BITS) - 1;

/// The node ID the kernel knows `node` by (see the module's doc).
pub fn node_id(node: &Inode) -> u64 {
    debug_assert!(node.ino <= INO_MASK, "inode numbers stay below 2^40");
    match node.kind {
        Kind::Dir => node.ino,
        Kind::File => (node.ino & INO_MASK) | node.version_tag() << INO_BITS,
    }
}

/// The master's inode number and the version tag (0: none) of a node ID.
fn split(nodeid: u64) -> (u64, u64) {
    (nodeid & INO_MASK, nodeid >> INO_BITS)
}

fn stale() -> io::Error {
    io::Error::from_raw_os_error(libc::ESTALE)
}

pub struct CisternFs {
    client: Arc<Client>,
    rt: Handle,
    /// How long the kernel may trust an entry or attribute; follows the metadata sync policy.
    ttl: Duration,
    dirs: Mutex<HashMap<u64, Arc<Vec<Inode>>>>,
    next_dir: AtomicU64,
    /// Set when the connection negotiated passthrough (see [`crate::passthrough`]).
    passthrough: Option<Passthrough>,
}

/// The connection options the file system asks for, whoever answers INIT.
pub fn wanted_options() -> FsOptions {
    FsOptions::ASYNC_READ | FsOptions::PARALLEL_DIROPS | FsOptions::DO_READDIRPLUS | FsOptions::READDIRPLUS_AUTO | FsOptions::MAX_PAGES
}

impl CisternFs {
    pub fn new(client: Arc<Client>, rt: Handle, ttl: Duration) -> CisternFs {
        CisternFs {
            client,
            rt,
            ttl,
            dirs: Mutex::default(),
            next_dir: AtomicU64::new(1),
            passthrough: None,
        }
    }

    /// Opens files wholly cached on this node in passthrough mode.
    pub fn with_passthrough(mut self, passthrough: Passthrough) -> CisternFs {
        self.passthrough = Some(passthrough);
        self
    }

    fn entry(&self, node: &Inode) -> Entry {
        Entry {
            inode: node_id(node),
            generation: 0,
            attr: to_stat(node),
            attr_flags: 0,
            attr_timeout: self.ttl,
            entry_timeout: self.ttl,
        }
    }

    fn snapshot(&self, ino: u64) -> io::Result<Arc<Vec<Inode>>> {
        Ok(Arc::new(self.rt.block_on(self.client.readdir(ino)).map_err(errno)?))
    }

    fn dir_snapshot(&self, ino: u64, handle: u64) -> io::Result<Arc<Vec<Inode>>> {
        if let Some(s) = self.dirs.lock().expect("dirs lock").get(&handle) {
            return Ok(s.clone());
        }
        let s = self.snapshot(ino)?;
        self.dirs.lock().expect("dirs lock").insert(handle, s.clone());
        Ok(s)
    }

    /// Feeds the entries after `offset` to `add` until it reports a full buffer (0 bytes).
    fn each_entry(
        &self,
        ino: u64,
        handle: u64,
        offset: u64,
        mut add: impl FnMut(DirEntry, &Inode) -> io::Result<usize>,
    ) -> io::Result<()> {
        let entries = self.dir_snapshot(split(ino).0, handle)?;
        for (i, node) in entries.iter().enumerate().skip(offset as usize) {
            let de = DirEntry { ino: node_id(node), offset: i as u64 + 1, type_: dtype(node), name: node.name.as_bytes() };
            if add(de, node)? == 0 {
                break;
            }
        }
        Ok(())
    }

    /// The cache figures and the UFS file count (0 until counted); zeros when the master
    /// cannot be reached, since `df` should not fail over figures.
    fn stats(&self) -> (CacheStats, u64) {
        match self.rt.block_on(self.client.stats()) {
            Ok((s, files)) => (s, files.unwrap_or(0)),
            Err(e) => {
                tracing::debug!("statfs: {}", e.message);
                (CacheStats::default(), 0)
            }
        }
    }

    /// The current metadata of the inode behind `nodeid` (whatever version it names).
    fn getattr_blocking(&self, nodeid: u64) -> io::Result<Inode> {
        self.rt.block_on(self.client.getattr(split(nodeid).0)).map_err(errno)
    }
}

fn errno(e: ClientError) -> io::Error {
    tracing::debug!(errno = ?e.errno, "{}", e.message);
    e.errno.into()
}

fn to_stat(node: &Inode) -> stat64 {
    // SAFETY: stat64 is a plain C struct of integers; all-zero is a valid value.
    let mut st: stat64 = unsafe { std::mem::zeroed() };
    st.st_ino = node_id(node);
    let (kind, perm, nlink) = match node.kind {
        Kind::Dir => (libc::S_IFDIR, 0o755, 2),
        Kind::File => (libc::S_IFREG, 0o644, 1),
    };
    st.st_mode = kind | perm;
    st.st_nlink = nlink;
    st.st_size = node.size as i64;
    st.st_blksize = IO_BLOCK as i64;
    st.st_blocks = node.size.div_ceil(512) as i64;
    st.st_mtime = node.mtime.0;
    st.st_mtime_nsec = node.mtime.1 as i64;
    st.st_atime = node.mtime.0;
    st.st_atime_nsec = node.mtime.1 as i64;
    st.st_ctime = node.mtime.0;
    st.st_ctime_nsec = node.mtime.1 as i64;
    st
}

fn dtype(node: &Inode) -> u32 {
    match node.kind {
        Kind::Dir => libc::DT_DIR as u32,
        Kind::File => libc::DT_REG as u32,
    }
}

fn name_of(name: &CStr) -> io::Result<&str> {
    name.to_str().map_err(|_| io::Error::from_raw_os_error(libc::ENOENT))
}

impl FileSystem for CisternFs {
    type Inode = u64;
    type Handle = u64;

    fn init(&self, capable: FsOptions) -> io::Result<FsOptions> {
        Ok(wanted_options() & capable)
    }

    fn lookup(&self, _ctx: &Context, parent: u64, name: &CStr) -> io::Result<Entry> {
        let _timer = self.client.fuse_latency.time("lookup");
        let name = name_of(name)?;
        let node = self.rt.block_on(self.client.lookup(split(parent).0, name)).map_err(errno)?;
        Ok(self.entry(&node))
    }

    fn getattr(&self, _ctx: &Context, ino: u64, _h: Option<u64>) -> io::Result<(stat64, Duration)> {
        let _timer = self.client.fuse_latency.time("getattr");
        let node = self.getattr_blocking(ino)?;
        if node_id(&node) != ino {
            // An older version of the file, still held open: its size and times as they
            // were are not known any more, and new ones would mislead. The kernel looks the
            // name up again for a path; a descriptor's fstat gets this.
            return Err(stale());
        }
        Ok((to_stat(&node), self.ttl))
    }

    fn open(&self, _ctx: &Context, ino: u64, flags: u32, _fuse_flags: u32) -> io::Result<(Option<u64>, OpenOptions, Option<u32>)> {
        let _timer = self.client.fuse_latency.time("open");
        if (flags as i32 & libc::O_ACCMODE) != libc::O_RDONLY {
            return Err(io::Error::from_raw_os_error(libc::EROFS));
        }
        let node = self.getattr_blocking(ino)?;
        if node.is_dir() {
            return Err(io::Error::from_raw_os_error(libc::EISDIR));
        }
        if node_id(&node) != ino {
            return Err(stale()); // the object changed: the kernel looks the name up again
        }
        if let Some(pt) = &self.passthrough {
            let find = || match self.client.local_file(&node) {
                Ok(file) => file,
                Err(e) => {
                    tracing::debug!("locate {}: {}", node.name, e.message);
                    None
                }
            };
            if let Mode::Passthrough(id) = pt.open(ino, find) {
                // SAFETY: FOPEN_PASSTHROUGH is a flag of the kernel's ABI that this version of
                // the library does not name; the backing id goes in the reply's third field.
                let opts = unsafe { OpenOptions::from_bits_unchecked(FOPEN_PASSTHROUGH) };
                return Ok((None, opts, Some(id)));
            }
        }
        // Content is immutable for a given version; keep the page cache across opens.
        Ok((None, OpenOptions::KEEP_CACHE, None))
    }

    #[allow(clippy::too_many_arguments)]
    fn read(
        &self,
        _ctx: &Context,
        ino: u64,
        _handle: u64,
        w: &mut dyn ZeroCopyWriter,
        size: u32,
        offset: u64,
        _lock_owner: Option<u64>,
        _flags: u32,
    ) -> io::Result<usize> {
        let _timer = self.client.fuse_latency.time("read");
        let (inode, tag) = split(ino);
        if offset == 0 {
            self.client.note_first_read(inode, &self.rt);
        }
        let data = self.rt.block_on(self.client.read_version(inode, tag, offset, size as u64)).map_err(errno)?;
        w.write_all(&data)?;
        Ok(data.len())
    }

    #[allow(clippy::too_many_arguments)]
    fn release(&self, _ctx: &Context, ino: u64, _flags: u32, _h: u64, _flush: bool, _flock: bool, _owner: Option<u64>) -> io::Result<()> {
        if let Some(pt) = &self.passthrough {
            pt.release(ino);
        }
        Ok(())
    }

    fn opendir(&self, _ctx: &Context, ino: u64, _flags: u32) -> io::Result<(Option<u64>, OpenOptions)> {
        let snapshot = self.snapshot(split(ino).0)?;
        let handle = self.next_dir.fetch_add(1, Ordering::Relaxed) | (std::process::id() as u64) << 40;
        self.dirs.lock().expect("dirs lock").insert(handle, snapshot);
        Ok((Some(handle), OpenOptions::empty()))
    }

    fn readdir(
        &self,
        _ctx: &Context,
        ino: u64,
        handle: u64,
        _size: u32,
        offset: u64,
        add_entry: &mut dyn FnMut(DirEntry) -> io::Result<usize>,
    ) -> io::Result<()> {
        let _timer = self.client.fuse_latency.time("readdir");
        self.each_entry(ino, handle, offset, |de, _| add_entry(de))
    }

    fn readdirplus(
        &self,
        _ctx: &Context,
        ino: u64,
        handle: u64,
        _size: u32,
        offset: u64,
        add_entry: &mut dyn FnMut(DirEntry, Entry) -> io::Result<usize>,
    ) -> io::Result<()> {
        let _timer = self.client.fuse_latency.time("readdir");
        self.each_entry(ino, handle, offset, |de, node| add_entry(de, self.entry(node)))
    }

    fn releasedir(&self, _ctx: &Context, _ino: u64, _flags: u32, handle: u64) -> io::Result<()> {
        self.dirs.lock().expect("dirs lock").remove(&handle);
        Ok(())
    }

    fn statfs(&self, _ctx: &Context, _ino: u64) -> io::Result<libc::statvfs64> {
        let _timer = self.client.fuse_latency.time("statfs");
        let (s, files) = self.stats();
        // SAFETY: statvfs64 is a plain C struct of integers; all-zero is a valid value.
        let mut st: libc::statvfs64 = unsafe { std::mem::zeroed() };
        st.f_bsize = IO_BLOCK;
        st.f_frsize = IO_BLOCK;
        st.f_blocks = s.capacity / IO_BLOCK;
        st.f_bfree = s.capacity.saturating_sub(s.cached) / IO_BLOCK;
        st.f_bavail = st.f_bfree;
        st.f_files = files;
        st.f_namemax = 255;
        st.f_flag = libc::ST_RDONLY;
        Ok(st)
    }

    // No extended attributes: ENOSYS makes the kernel remember that for the connection and
    // answer EOPNOTSUPP itself, so `ls -l` (an lgetxattr and a getxattr per entry, for ACLs
    // and security labels) no longer costs two round trips to the daemon per file.
    fn getxattr(&self, _ctx: &Context, _ino: u64, _name: &CStr, _size: u32) -> io::Result<GetxattrReply> {
        Err(io::Error::from_raw_os_error(libc::ENOSYS))
    }

    fn listxattr(&self, _ctx: &Context, _ino: u64, _size: u32) -> io::Result<ListxattrReply> {
        Err(io::Error::from_raw_os_error(libc::ENOSYS))
    }

    fn access(&self, _ctx: &Context, _ino: u64, mask: u32) -> io::Result<()> {
        if mask & libc::W_OK as u32 != 0 {
            return Err(io::Error::from_raw_os_error(libc::EROFS));
        }
        Ok(())
    }
}
