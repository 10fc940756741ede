//! Short-circuit reads: a worker on this node answers a read with where the bytes are in its
//! cache file, and the client reads them there itself, so no copy of the data crosses the RPC
//! (this is what Alluxio and HDFS call short-circuit local reads).
//!
//! Each 64 KiB chunk read is checked against the crc32c the worker sent with the range. A chunk
//! that does not match (evicted since, which reads back as a hole, or damaged on disk) fails
//! the read here, and the caller asks the worker for the bytes instead; the worker then finds
//! a damaged block itself, drops it and fetches it again. So a bad byte is never served either
//! way.

use bytes::Bytes;
use cistern_rpc::pb;
use cistern_worker::store::checksum::CHUNK;
use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Cache files kept open; past this many, all are closed (a descriptor of a file the worker
/// has unlinked keeps its space until closed, so they are not kept forever).
const OPEN_FILES_MAX: usize = 256;

/// Reads cache files of workers on this node.
pub struct ShortCircuit {
    node: String,
    /// Path → (inode number, descriptor).
    files: Mutex<HashMap<String, (u64, Arc<File>)>>,
    /// Bytes served from cache files.
    pub bytes: AtomicU64,
    /// Reads that fell back to the worker (a chunk that did not match, a file gone).
    pub fallbacks: AtomicU64,
}

impl ShortCircuit {
    /// Short-circuit reads on this node, unless `CISTERN_NO_SHORT_CIRCUIT` is set (to 1).
    pub fn from_env() -> Option<ShortCircuit> {
        let off = std::env::var("CISTERN_NO_SHORT_CIRCUIT").is_ok_and(|v| !v.is_empty() && v != "0");
        (!off).then(|| ShortCircuit {
            node: cistern_rpc::node_name(),
            files: Mutex::default(),
            bytes: AtomicU64::new(0),
            fallbacks: AtomicU64::new(0),
        })
    }

    /// The node name sent to workers, which answer with a place only on the same node.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// `[start, end)` (file offsets) from the cache file `r` names, verified.
    pub fn read(&self, r: &pb::LocalRange, start: u64, end: u64) -> io::Result<Bytes> {
        let chunks = (r.end.saturating_sub(r.offset)).div_ceil(CHUNK);
        if start < r.offset || end > r.end || start > end || chunks != r.crcs.len() as u64 {
            return Err(io::Error::new(io::ErrorKind::InvalidData, format!("{}: the worker's range does not cover the read", r.path)));
        }
        let file = self.open(&r.path, r.file_id)?;
        let buf = read_exact_at(&file, (r.end - r.offset) as usize, r.offset)?;
        for (i, (chunk, want)) in buf.chunks(CHUNK as usize).zip(&r.crcs).enumerate() {
            if crc32c::crc32c(chunk) != *want {
                self.files.lock().expect("files lock").remove(&r.path);
                let at = r.offset + i as u64 * CHUNK;
                return Err(io::Error::new(io::ErrorKind::InvalidData, format!("{}: the chunk at {at} failed its checksum", r.path)));
            }
        }
        self.bytes.fetch_add(end - start, Ordering::Relaxed);
        Ok(Bytes::from(buf).slice((start - r.offset) as usize..(end - r.offset) as usize))
    }

    /// The open cache file at `path` when it is still file `id`.
    fn open(&self, path: &str, id: u64) -> io::Result<Arc<File>> {
        if let Some((held, f)) = self.files.lock().expect("files lock").get(path) {
            if *held == id {
                return Ok(f.clone());
            }
        }
        let f = Arc::new(File::open(path)?);
        let ino = f.metadata()?.ino();
        if ino != id {
            return Err(io::Error::new(io::ErrorKind::NotFound, format!("{path}: replaced since the worker answered")));
        }
        let mut files = self.files.lock().expect("files lock");
        if files.len() >= OPEN_FILES_MAX {
            files.clear();
        }
        files.insert(path.to_string(), (id, f.clone()));
        Ok(f)
    }
}

/// `len` bytes at `offset`, read into a new buffer that is not zeroed first (zeroing a 1 MiB
/// buffer per read costs about as much as the read itself).
fn read_exact_at(file: &File, len: usize, offset: u64) -> io::Result<Vec<u8>> {
    use std::os::unix::io::AsRawFd;
    let mut buf: Vec<u8> = Vec::with_capacity(len);
    let mut done = 0;
    while done < len {
        // SAFETY: pread(2) writes at most `len - done` bytes into the buffer's spare capacity
        // from `done` on, which `with_capacity(len)` allocated; nothing reads it before
        // `set_len` below covers only the bytes written.
        let n = unsafe {
            libc::pread(file.as_raw_fd(), buf.as_mut_ptr().add(done).cast(), len - done, (offset + done as u64) as libc::off_t)
        };
        match n {
            n if n > 0 => done += n as usize,
            0 => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the cache file is shorter than the range")),
            _ => {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
    }
    // SAFETY: the first `len` bytes were written by pread above.
    unsafe { buf.set_len(len) };
    Ok(buf)
}
