//! Short-circuit reads: a worker on this node answers a read with where the bytes are in its
//! cache file, and the client reads them there itself, so no copy of the data crosses the RPC
//! (this is what Alluxio and HDFS call short-circuit local reads).
//!
//! The client never opens a path: it asks the worker's descriptor socket on this node
//! (`<dir>/worker-<id>.fd.sock`, in the run directory the client was given, never a place a
//! peer named) for a read-only descriptor of the cache file, by the master's signed reference,
//! and keeps it by the file's inode number.
//!
//! Each 64 KiB chunk read is checked against the crc32c the worker sent with the range. A chunk
//! that does not match (evicted since, which reads back as a hole, or damaged on disk) fails
//! the read here, and the caller asks the worker for the bytes instead; the worker then finds
//! a damaged block itself, drops it and fetches it again. So a bad byte is never served either
//! way.

use bytes::Bytes;
use cistern_rpc::{descriptors, pb};
use cistern_worker::store::checksum::CHUNK;
use prost::Message;
use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Cache files kept open; past this many, all are closed (a descriptor of a file the worker
/// has unlinked keeps its space until closed, so they are not kept forever).
const OPEN_FILES_MAX: usize = 256;
/// How long a worker's descriptor socket may take to answer.
const SOCKET_TIMEOUT: Duration = Duration::from_secs(2);
/// Chunk checksums remembered for reads without an RPC (about 24 bytes each: 6 MiB, vouching
/// for 16 GiB of cache); past this many, all are forgotten.
const KNOWN_CHUNKS_MAX: usize = 256 << 10;

/// Reads cache files of workers on this node.
pub struct ShortCircuit {
    node: String,
    /// Where the workers' descriptor sockets are.
    dir: PathBuf,
    /// Inode number → descriptor.
    files: Mutex<HashMap<u64, Arc<File>>>,
    /// Worker id → its descriptor socket, once connected.
    sockets: Mutex<HashMap<u32, Arc<Mutex<Option<OwnedFd>>>>>,
    /// Bytes served from cache files.
    pub bytes: AtomicU64,
    /// Reads that fell back to the worker (a chunk that did not match, a file gone).
    pub fallbacks: AtomicU64,
    /// Chunks the workers vouched for, so that reading them again needs no RPC.
    known: Mutex<KnownChunks>,
}

/// The checksums a worker sent for chunks of a cache file, by the file reference (signed, so
/// one per content version): a read whose every chunk is among them is read from the cache
/// file and checked against them without asking the worker. That is how a warm read of a file
/// not complete yet (which passthrough cannot serve) costs no RPC. A chunk evicted since reads
/// back as a hole and fails its check, and the read goes to the worker as before.
#[derive(Default)]
struct KnownChunks {
    /// The reference's MAC → (cache file id, chunk index → crc32c).
    files: HashMap<Vec<u8>, (u64, HashMap<u64, u32>)>,
    chunks: usize,
}

impl ShortCircuit {
    /// Short-circuit reads of the workers whose descriptor sockets are in `dir`, unless
    /// `CISTERN_NO_SHORT_CIRCUIT` is set (to 1).
    pub fn new(dir: PathBuf) -> Option<ShortCircuit> {
        let off = std::env::var("CISTERN_NO_SHORT_CIRCUIT").is_ok_and(|v| !v.is_empty() && v != "0");
        (!off).then(|| ShortCircuit {
            node: cistern_rpc::node_name(),
            dir,
            files: Mutex::default(),
            sockets: Mutex::default(),
            bytes: AtomicU64::new(0),
            fallbacks: AtomicU64::new(0),
            known: Mutex::default(),
        })
    }

    /// The node name sent to workers, which answer with a place only on the same node.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// True when a descriptor of cache file `id` is at hand.
    pub fn has(&self, id: u64) -> bool {
        self.files.lock().expect("files lock").contains_key(&id)
    }

    /// Asks worker `worker` (blocking, bounded by a timeout) for a read-only descriptor of
    /// `file`'s cache file; `None` when it has none (or, with `complete_only`, not all of it).
    /// The descriptor must be of a regular file with the inode number the worker named.
    pub fn open(&self, worker: u32, file: &pb::FileRef, complete_only: bool) -> io::Result<Option<(u64, Arc<File>)>> {
        let request = pb::OpenRequest { file: Some(file.clone()), complete_only }.encode_to_vec();
        let (reply, fd) = self.call(worker, &request)?;
        let reply = pb::OpenReply::decode(reply.as_slice()).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        if cistern_rpc::Errno::from_raw(reply.errno) == cistern_rpc::Errno::NotFound {
            return Ok(None);
        }
        if reply.errno != 0 {
            return Err(io::Error::other(format!("worker {worker} refused a descriptor: {} (errno {})", reply.message, reply.errno)));
        }
        let file = File::from(fd.ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "the worker sent no descriptor"))?);
        let meta = file.metadata()?;
        if !meta.file_type().is_file() || meta.ino() != reply.file_id || (complete_only && !reply.complete) {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "the worker's descriptor is not the cache file it named"));
        }
        let file = Arc::new(file);
        let mut files = self.files.lock().expect("files lock");
        if files.len() >= OPEN_FILES_MAX {
            files.clear();
        }
        files.insert(reply.file_id, file.clone());
        Ok(Some((reply.file_id, file)))
    }

    /// One request and its answer on worker `worker`'s socket, connecting (again) as needed.
    fn call(&self, worker: u32, request: &[u8]) -> io::Result<(Vec<u8>, Option<OwnedFd>)> {
        let slot = self.sockets.lock().expect("sockets lock").entry(worker).or_default().clone();
        let mut sock = slot.lock().expect("socket lock");
        for attempt in 0..2 {
            if sock.is_none() {
                let path = descriptors::socket_path(&self.dir, worker);
                let s = descriptors::connect(&path)?;
                if !descriptors::peer_is_trusted(&s, descriptors::owner_of(&self.dir))? {
                    let why = format!("{}: served by neither root, this user, nor the run directory's owner", path.display());
                    return Err(io::Error::new(io::ErrorKind::PermissionDenied, why));
                }
                descriptors::set_timeout(&s, SOCKET_TIMEOUT)?;
                *sock = Some(s);
            }
            let s = sock.as_ref().expect("connected above");
            let answer = descriptors::send(s, request, None).and_then(|()| descriptors::recv(s));
            match answer {
                Ok(Some(a)) => return Ok(a),
                // The worker restarted since: connect to the new one once.
                Ok(None) | Err(_) if attempt == 0 => *sock = None,
                Ok(None) => return Err(io::Error::new(io::ErrorKind::ConnectionReset, "the worker closed its descriptor socket")),
                Err(e) => {
                    *sock = None;
                    return Err(e);
                }
            }
        }
        unreachable!("the second attempt returns")
    }

    /// `[start, end)` (file offsets) from the cache file `r` names, verified; the file must
    /// have been opened with [`ShortCircuit::open`].
    pub fn read(&self, r: &pb::LocalRange, start: u64, end: u64) -> io::Result<Bytes> {
        let chunks = (r.end.saturating_sub(r.offset)).div_ceil(CHUNK);
        // A range is the read rounded out to whole chunks: anything larger is not read.
        let bounded = r.end.saturating_sub(r.offset) <= cistern_rpc::MAX_READ_LEN + 2 * CHUNK;
        if !bounded || start < r.offset || end > r.end || start > end || chunks != r.crcs.len() as u64 {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "the worker's range does not cover the read"));
        }
        let file = self.files.lock().expect("files lock").get(&r.file_id).cloned();
        let file = file.ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("no descriptor of cache file {}", r.file_id)))?;
        let buf = read_exact_at(&file, (r.end - r.offset) as usize, r.offset)?;
        for (i, (chunk, want)) in buf.chunks(CHUNK as usize).zip(&r.crcs).enumerate() {
            if crc32c::crc32c(chunk) != *want {
                self.files.lock().expect("files lock").remove(&r.file_id);
                let at = r.offset + i as u64 * CHUNK;
                return Err(io::Error::new(io::ErrorKind::InvalidData, format!("cache file {}: the chunk at {at} failed its checksum", r.file_id)));
            }
        }
        self.bytes.fetch_add(end - start, Ordering::Relaxed);
        Ok(Bytes::from(buf).slice((start - r.offset) as usize..(end - r.offset) as usize))
    }
}

impl ShortCircuit {
    /// Remembers the checksums of `r`, a range of `file`'s cache file that was just read and
    /// verified.
    pub fn learn(&self, file: &pb::FileRef, r: &pb::LocalRange) {
        if !r.offset.is_multiple_of(CHUNK) || (!r.end.is_multiple_of(CHUNK) && r.end != file.size) || file.mac.is_empty() {
            return;
        }
        let mut known = self.known.lock().expect("known lock");
        if known.chunks + r.crcs.len() > KNOWN_CHUNKS_MAX {
            *known = KnownChunks::default();
        }
        let known = &mut *known;
        let entry = known.files.entry(file.mac.clone()).or_insert_with(|| (r.file_id, HashMap::new()));
        if entry.0 != r.file_id {
            // Another cache file of the same version (evicted and fetched again): start over.
            known.chunks -= entry.1.len();
            *entry = (r.file_id, HashMap::new());
        }
        for (i, crc) in r.crcs.iter().enumerate() {
            if entry.1.insert(r.offset / CHUNK + i as u64, *crc).is_none() {
                known.chunks += 1;
            }
        }
    }

    /// `[start, end)` of `file` from its cache file without asking the worker, when every
    /// chunk of it was vouched for before and its descriptor is still at hand; `None`
    /// otherwise, and when a chunk fails its check (then the file's chunks are forgotten and
    /// the caller asks the worker, which finds out why).
    pub fn read_known(&self, file: &pb::FileRef, start: u64, end: u64) -> Option<Bytes> {
        if start >= end || end > file.size || end - start > cistern_rpc::MAX_READ_LEN {
            return None;
        }
        let range = {
            let known = self.known.lock().expect("known lock");
            let (file_id, crcs) = known.files.get(&file.mac)?;
            let (first, last) = (start / CHUNK, (end - 1) / CHUNK);
            let crcs = (first..=last).map(|c| crcs.get(&c).copied()).collect::<Option<Vec<u32>>>()?;
            pb::LocalRange { file_id: *file_id, offset: first * CHUNK, end: ((last + 1) * CHUNK).min(file.size), crcs }
        };
        if !self.has(range.file_id) {
            return None;
        }
        match self.read(&range, start, end) {
            Ok(data) => Some(data),
            Err(e) => {
                tracing::debug!("a read of remembered chunks failed ({e}); asking the worker");
                let mut known = self.known.lock().expect("known lock");
                if let Some((_, crcs)) = known.files.remove(&file.mac) {
                    known.chunks -= crcs.len();
                }
                None
            }
        }
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
