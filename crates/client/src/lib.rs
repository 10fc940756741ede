//! The read path that the FUSE layer and the tools use: metadata from the master, data from
//! the worker that owns the file (by rendezvous hashing of its mount and path over the
//! workers' identities, [`placement`], so each file is cached once across the nodes).
//!
//! The master and workers are behind two traits ([`MetaService`], [`DataService`]) with a gRPC
//! implementation ([`remote`]) and an in-process one ([`service`]). Every call rides out a
//! restarting peer: transport failures are retried with backoff ([`cistern_rpc::with_retry`]),
//! so a read in flight while the master or a worker is killed and restarted simply waits.
//! A file's metadata is kept for [`INODE_TTL`] so that reads do not ask the master each time;
//! any newer answer from the master replaces it at once. Directory entries (from lookups and
//! listings) are kept as long as the kernel would keep them ([`Client::set_entry_ttl`], the
//! mount's entry timeout), so a lookup after the kernel dropped its dentries, or an `ls -l`
//! stating every entry just listed, does not cost a round trip to the master each.

pub use cistern_rpc::placement;
pub mod epoch;
pub mod remote;
pub mod service;
pub mod short_circuit;
mod load;

use bytes::Bytes;
use cistern_rpc::Errno;
use cistern_master::{Ino, Inode, Namespace};
use cistern_rpc::{pb, with_retry, Address, Backoff, RpcError};
use cistern_worker::rpc::WorkerService;
use cistern_worker::Worker;
use service::{LocalMaster, LocalWorker};
use short_circuit::ShortCircuit;
pub use service::{DataService, MetaService};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use tonic::Status;

/// How long a file's metadata is reused for reads without asking the master again.
pub const INODE_TTL: Duration = Duration::from_secs(1);
/// Past this many remembered inodes, the expired ones are dropped.
const INODE_CACHE_MAX: usize = 100_000;
/// A directory of at most this many entries is listed on the first lookup in it.
const LIST_FOR_LOOKUP_MAX: u32 = 4096;

/// The FUSE operations whose durations are counted.
pub const FUSE_OPS: &[&str] = &["lookup", "getattr", "open", "read", "readdir", "statfs"];

/// A failure with the errno to answer and the cause for the log.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct ClientError {
    pub errno: Errno,
    pub message: String,
}

impl From<Status> for ClientError {
    fn from(s: Status) -> Self {
        let e = RpcError::from(s);
        ClientError { errno: e.errno, message: e.message }
    }
}

/// What a worker needs to know of a file to read it: the reference the master signed.
fn file_ref(node: &Inode) -> Result<pb::FileRef, ClientError> {
    if node.is_dir() || node.mount.is_none() {
        return Err(ClientError { errno: Errno::IsADirectory, message: format!("{}: is a directory", node.name) });
    }
    node.file_ref.clone().ok_or_else(|| ClientError { errno: Errno::Io, message: format!("{}: the master sent no file reference (a master of an older release?)", node.name) })
}

/// A worker's answer to a read of `[offset, end)`: never more than asked for (a short answer
/// is the end of the file, which the caller sees as such).
fn bounded(data: Bytes, offset: u64, end: u64) -> Result<Bytes, ClientError> {
    let asked = end.saturating_sub(offset);
    if data.len() as u64 > asked {
        return Err(ClientError { errno: Errno::Io, message: format!("a worker answered a read of {asked} bytes with {}", data.len()) });
    }
    Ok(data)
}

/// Cache figures summed over the workers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub cached: u64,
    pub capacity: u64,
    pub local_bytes: u64,
    pub remote_bytes: u64,
    pub ufs_bytes: u64,
}

impl CacheStats {
    pub fn add(&mut self, f: &pb::WorkerFigures) {
        self.cached += f.cached_bytes;
        self.capacity += f.capacity_bytes;
        self.local_bytes += f.local_bytes;
        self.remote_bytes += f.remote_bytes;
        self.ufs_bytes += f.ufs_bytes;
    }
}

/// How long a worker this client failed to reach is passed over while the master still lists
/// it: longer than the master takes to drop a silent worker (`WORKER_TIMEOUT`, 5 s) and this
/// client to hear of it (2 s), so a dead worker costs a reader one stall, not one every few
/// seconds; short enough that a worker that was only cut off is used again soon.
pub const UNREACHABLE_FOR: Duration = Duration::from_secs(10);

/// A worker as a client knows it.
struct KnownWorker {
    address: String,
    identity: u64,
    /// The node it runs on (`NODE_NAME`).
    node: String,
    service: Arc<dyn DataService>,
}

/// The workers a client reads from, by index, with the address each was reached at.
///
/// Who is in the set: the master's list decides (a worker the master cannot see gets no
/// reads, even if this client could reach it: it may be partitioned from its own
/// heartbeat, or leaving). A worker the master lists but this client fails to reach is
/// passed over for [`UNREACHABLE_FOR`] and its files read from the next worker in their
/// ranking; when every worker is passed over, the best is tried anyway.
#[derive(Default)]
struct WorkerSet {
    replicas: u32,
    /// On how many workers each file is kept: a client reads from the one on its own node
    /// when one of them is there.
    data_replicas: u32,
    by_id: BTreeMap<u32, KnownWorker>,
    unreachable: HashMap<u32, Instant>,
}

impl WorkerSet {
    /// The worker that caches `file` ([`placement`]): the reachable worker with the highest
    /// score for its key. That is the owner when it is reachable, else the next in the
    /// owner's ranking, so a file goes to one place and back to its owner when the owner
    /// returns. One pass over the workers, no allocation: this runs on every read.
    fn pick(&self, file: &pb::FileRef, node: &str) -> Option<(u32, Arc<dyn DataService>)> {
        let key = placement::key(file.mount, &file.path);
        let rank = |w: &KnownWorker| (placement::score(w.identity, key), w.identity);
        if self.data_replicas > 1 {
            return self.pick_replica(key, node);
        }
        let mut best: Option<(u32, &KnownWorker)> = None;
        let mut best_reachable: Option<(u32, &KnownWorker)> = None;
        for (id, w) in &self.by_id {
            if best.is_none_or(|(_, b)| rank(w) > rank(b)) {
                best = Some((*id, w));
            }
            let passed_over = self.unreachable.get(id).is_some_and(|at| at.elapsed() < UNREACHABLE_FOR);
            if !passed_over && best_reachable.is_none_or(|(_, b)| rank(w) > rank(b)) {
                best_reachable = Some((*id, w));
            }
        }
        best_reachable.or(best).map(|(id, w)| (id, w.service.clone()))
    }

    /// With several copies of each file: the reachable replica on `node`, else the first.
    fn pick_replica(&self, key: u64, node: &str) -> Option<(u32, Arc<dyn DataService>)> {
        let passed_over = |id: &u32| self.unreachable.get(id).is_some_and(|at| at.elapsed() < UNREACHABLE_FOR);
        let mut ranked: Vec<(&u32, &KnownWorker)> = self.by_id.iter().filter(|(id, _)| !passed_over(id)).collect();
        if ranked.is_empty() {
            ranked = self.by_id.iter().collect();
        }
        ranked.sort_unstable_by_key(|(_, w)| std::cmp::Reverse((placement::score(w.identity, key), w.identity)));
        let replicas = &ranked[..ranked.len().min(self.data_replicas as usize)];
        let chosen = replicas.iter().find(|(_, w)| !node.is_empty() && w.node == node).or(replicas.first())?;
        Some((*chosen.0, chosen.1.service.clone()))
    }

    /// The `rank`-th worker of `file`'s ranking (0: its owner), over every worker listed.
    fn at_rank(&self, file: &pb::FileRef, rank: usize) -> Option<(u32, Arc<dyn DataService>)> {
        let key = placement::key(file.mount, &file.path);
        let mut ranked: Vec<(&u32, &KnownWorker)> = self.by_id.iter().collect();
        ranked.sort_unstable_by_key(|(_, w)| std::cmp::Reverse((placement::score(w.identity, key), w.identity)));
        ranked.get(rank).map(|(id, w)| (**id, w.service.clone()))
    }

    fn mark_unreachable(&mut self, id: u32) {
        if self.by_id.contains_key(&id) {
            self.unreachable.insert(id, Instant::now());
        }
    }
}

pub struct Client {
    meta: Arc<dyn MetaService>,
    workers: RwLock<WorkerSet>,
    /// True when workers are found through the master (and must be looked up again when one
    /// fails); false for a fixed set in this process.
    discover: bool,
    inodes: Mutex<HashMap<Ino, (Instant, Inode)>>,
    /// (parent, name) → the entry, with when it was learned.
    entries: Mutex<HashMap<(Ino, String), (Instant, Inode)>>,
    /// Directories this client listed to answer lookups in them (or found too large to), and
    /// when: one try per directory per entry timeout.
    listed_for_lookup: Mutex<HashMap<Ino, Instant>>,
    /// Directories being walked, for the epoch prefetch ([`epoch`]); `None`: off.
    epochs: Option<epoch::Epochs>,
    prefetching: Arc<tokio::sync::Semaphore>,
    /// How long entries are reused, in milliseconds (0: never).
    entry_ttl_ms: std::sync::atomic::AtomicU64,
    backoff: Backoff,
    /// Reads of cache files of workers on this node (`None`: every byte comes over the RPC).
    short_circuit: Option<Arc<ShortCircuit>>,
    /// The node this client runs on, told to workers so that their figures say local or remote.
    node: String,
    /// The log filter the master asks FUSE clients for (empty: their own).
    wanted_log_level: Mutex<String>,
    /// Durations of the file system's operations, timed by the FUSE layer and reported to the
    /// master with each refresh (`cistern_fuse_operation_duration_seconds`).
    pub fuse_latency: cistern_rpc::latency::OpLatencies,
    log: Option<cistern_rpc::LogControl>,
}

impl Client {
    /// A client of a master and workers in this process.
    pub fn local(ns: Arc<Namespace>, workers: Vec<Arc<Worker>>) -> Client {
        assert!(!workers.is_empty(), "a client needs at least one worker");
        let mounts: Vec<_> = ns.mounts().iter().map(|m| m.ufs.clone()).collect();
        let refs = cistern_rpc::RefKey::generate();
        let meta = Arc::new(LocalMaster::new(ns, &workers, refs.clone()));
        let mut set = WorkerSet { replicas: workers.len() as u32, ..Default::default() };
        for w in workers {
            let service: Arc<dyn DataService> = Arc::new(LocalWorker(WorkerService { worker: w.clone(), mounts: mounts.clone(), refs: refs.clone() }));
            set.by_id.insert(w.id as u32, KnownWorker { address: format!("local:{}", w.id), identity: w.identity, node: String::new(), service });
        }
        Client::with(meta, set, false)
    }

    /// A client of the master at `master`; workers are found through it (see
    /// [`Client::refresh_workers`]).
    pub fn remote(master: &Address) -> Result<Client, ClientError> {
        Client::remote_any(std::slice::from_ref(master))
    }

    /// A client of the masters at `masters` (a Raft quorum): any one answers, and a master
    /// that fails in transport hands the next call to another.
    pub fn remote_any(masters: &[Address]) -> Result<Client, ClientError> {
        let meta = remote::RemoteMaster::new(masters).map_err(|message| ClientError { errno: Errno::InvalidArgument, message })?;
        Ok(Client::with(Arc::new(meta), WorkerSet::default(), true))
    }

    fn with(meta: Arc<dyn MetaService>, workers: WorkerSet, discover: bool) -> Client {
        Client {
            meta,
            workers: RwLock::new(workers),
            discover,
            inodes: Mutex::default(),
            entries: Mutex::default(),
            listed_for_lookup: Mutex::default(),
            epochs: std::env::var("CISTERN_EPOCH_PREFETCH").is_ok_and(|v| v == "1" || v == "true").then(epoch::Epochs::default),
            prefetching: Arc::new(tokio::sync::Semaphore::new(epoch::PREFETCH_FILES)),
            entry_ttl_ms: std::sync::atomic::AtomicU64::new(0),
            backoff: Backoff::default(),
            short_circuit: None,
            node: cistern_rpc::node_name(),
            wanted_log_level: Mutex::default(),
            fuse_latency: cistern_rpc::latency::OpLatencies::new(FUSE_OPS),
            log: None,
        }
    }

    /// How long calls keep retrying an unreachable peer before failing with EIO.
    pub fn with_backoff(mut self, backoff: Backoff) -> Client {
        self.backoff = backoff;
        self
    }

    /// Asks the master which workers are live and connects to new ones; returns how many
    /// there are.
    pub async fn refresh_workers(&self) -> Result<usize, ClientError> {
        if !self.discover {
            return Ok(self.workers.read().expect("workers lock").by_id.len());
        }
        let report = pb::ClientReport { node: self.node.clone(), pid: std::process::id(), fuse_latency: self.fuse_latency.snapshot(), process: Some(cistern_rpc::latency::process_figures()), log_level: self.log.map(|l| (l.current)()).unwrap_or_default() };
        let cluster = with_retry("cluster", self.backoff, || self.meta.cluster(Some(report.clone()))).await?;
        *self.wanted_log_level.lock().expect("log level lock") = cluster.fuse_log_level.clone();
        let mut set = self.workers.write().expect("workers lock");
        if cluster.workers.is_empty() {
            // A master that just restarted knows no worker until their next heartbeat: keep
            // the ones we have rather than stall reads until then.
            return Ok(set.by_id.len());
        }
        set.replicas = cluster.replicas;
        set.data_replicas = cluster.data_replicas;
        let mut by_id = BTreeMap::new();
        for w in cluster.workers {
            let kept = set.by_id.remove(&w.id).filter(|k| k.address == w.address);
            let entry = match kept {
                Some(k) => KnownWorker { identity: w.identity, node: w.node.clone(), ..k },
                None => match Address::parse(&w.address).and_then(|a| remote::RemoteWorker::new(&a)) {
                    Ok(rw) => {
                        // Another process at another address: what we could not reach is gone.
                        set.unreachable.remove(&w.id);
                        KnownWorker { address: w.address.clone(), identity: w.identity, node: w.node.clone(), service: Arc::new(rw) }
                    }
                    Err(e) => {
                        tracing::warn!(worker = w.id, "unusable worker address: {e}");
                        continue;
                    }
                },
            };
            by_id.insert(w.id, entry);
        }
        set.by_id = by_id;
        set.unreachable.retain(|_, at| at.elapsed() < UNREACHABLE_FOR);
        Ok(set.by_id.len())
    }

    pub async fn getattr(&self, ino: Ino) -> Result<Inode, ClientError> {
        let node = with_retry("getattr", self.backoff, || self.meta.getattr(ino)).await?;
        self.remember(&node, true);
        Ok(node)
    }

    /// Reuses directory entries for `ttl` (the mount's entry timeout); zero turns it off.
    pub fn set_entry_ttl(&self, ttl: Duration) {
        self.entry_ttl_ms.store(ttl.as_millis() as u64, std::sync::atomic::Ordering::Relaxed);
    }

    fn entry_ttl(&self) -> Duration {
        Duration::from_millis(self.entry_ttl_ms.load(std::sync::atomic::Ordering::Relaxed))
    }

    pub async fn lookup(&self, parent: Ino, name: &str) -> Result<Inode, ClientError> {
        let ttl = self.entry_ttl();
        let kept = self.entries.lock().expect("entries lock").get(&(parent, name.to_string())).filter(|(at, _)| at.elapsed() < ttl).map(|(_, n)| n.clone());
        if let Some(node) = kept {
            return Ok(node);
        }
        // The first lookup in a small directory lists it: the entries answer every later lookup
        // there (a `stat` of each file of a directory costs one RPC, not one each).
        if !ttl.is_zero() && self.first_lookup_in(parent, ttl) {
            if let Ok(Some(nodes)) = with_retry("readdir", self.backoff, || self.meta.readdir_limited(parent, LIST_FOR_LOOKUP_MAX)).await {
                for n in &nodes {
                    self.remember(n, false);
                }
                self.keep_entries(parent, &nodes);
                if let Some(node) = nodes.into_iter().find(|n| n.name == name) {
                    self.remember(&node, true);
                    return Ok(node);
                }
                // Not listed: the master is asked, as for any other name.
            }
        }
        let node = with_retry("lookup", self.backoff, || self.meta.lookup(parent, name)).await?;
        self.remember(&node, true);
        self.keep_entries(parent, std::slice::from_ref(&node));
        Ok(node)
    }

    pub async fn readdir(&self, ino: Ino) -> Result<Vec<Inode>, ClientError> {
        self.readdir_synced(ino, false).await
    }

    /// True once per `ttl` for each directory: whether to list it for a lookup.
    fn first_lookup_in(&self, dir: Ino, ttl: Duration) -> bool {
        let mut listed = self.listed_for_lookup.lock().expect("listed lock");
        if listed.get(&dir).is_some_and(|at| at.elapsed() < ttl) {
            return false;
        }
        if listed.len() >= INODE_CACHE_MAX {
            listed.retain(|_, at| at.elapsed() < ttl);
            if listed.len() >= INODE_CACHE_MAX {
                listed.clear();
            }
        }
        listed.insert(dir, Instant::now());
        true
    }

    /// A directory's entries; with `sync`, as its UFS lists them now (the master re-lists it
    /// unless it did within the last second), whatever the sync interval.
    pub async fn readdir_synced(&self, ino: Ino, sync: bool) -> Result<Vec<Inode>, ClientError> {
        let nodes = with_retry("readdir", self.backoff, || self.meta.readdir(ino, sync)).await?;
        for n in &nodes {
            self.remember(n, false);
        }
        self.keep_entries(ino, &nodes);
        Ok(nodes)
    }

    fn keep_entries(&self, parent: Ino, nodes: &[Inode]) {
        let ttl = self.entry_ttl();
        if ttl.is_zero() {
            return;
        }
        let mut entries = self.entries.lock().expect("entries lock");
        if entries.len() + nodes.len() > INODE_CACHE_MAX {
            entries.retain(|_, (at, _)| at.elapsed() < ttl);
            if entries.len() + nodes.len() > INODE_CACHE_MAX {
                entries.clear(); // all fresh: start over rather than grow without bound
            }
        }
        let now = Instant::now();
        for n in nodes.iter().take(INODE_CACHE_MAX) {
            entries.insert((parent, n.name.clone()), (now, n.clone()));
        }
    }

    /// Keeps the newest metadata of a file for reads; `insert` false only refreshes what is
    /// already kept (a big listing does not fill the map).
    fn remember(&self, node: &Inode, insert: bool) {
        if node.is_dir() {
            return;
        }
        let mut inodes = self.inodes.lock().expect("inodes lock");
        if insert || inodes.contains_key(&node.ino) {
            if inodes.len() >= INODE_CACHE_MAX {
                inodes.retain(|_, (at, _)| at.elapsed() < INODE_TTL);
            }
            inodes.insert(node.ino, (Instant::now(), node.clone()));
        }
    }

    async fn file(&self, ino: Ino) -> Result<Inode, ClientError> {
        let kept = self.inodes.lock().expect("inodes lock").get(&ino).filter(|(at, _)| at.elapsed() < INODE_TTL).map(|(_, n)| n.clone());
        match kept {
            Some(n) => Ok(n),
            None => self.getattr(ino).await,
        }
    }

    /// Reads up to `len` bytes at `offset` of a file.
    pub async fn read(&self, ino: Ino, offset: u64, len: u64) -> Result<Bytes, ClientError> {
        self.read_version(ino, 0, offset, len).await
    }

    /// Reads up to `len` bytes at `offset` of the version of a file whose
    /// [`Inode::version_tag`] is `tag` (0: whichever is current); `ESTALE` when the file has
    /// changed since, rather than bytes of another version.
    pub async fn read_version(&self, ino: Ino, tag: u64, offset: u64, len: u64) -> Result<Bytes, ClientError> {
        let node = self.file(ino).await?;
        if tag != 0 && node.version_tag() != tag {
            return Err(ClientError { errno: Errno::Stale, message: format!("{}: changed on the UFS since it was opened", node.name) });
        }
        let file = file_ref(&node)?;
        let end = offset.saturating_add(len).min(file.size);
        if let Some(data) = self.short_circuit.as_ref().and_then(|sc| sc.read_known(&file, offset, end)) {
            return Ok(data);
        }
        let node = self.short_circuit.as_ref().map(|s| s.node().to_string()).unwrap_or_default();
        let (worker, reply) = self.read_from_worker(&file, offset, len, node, false).await?;
        let (Some(local), Some(sc)) = (reply.local, &self.short_circuit) else {
            return bounded(reply.data, offset, end);
        };
        let opened = if sc.has(local.file_id) {
            Ok(())
        } else {
            // Once per cache file: a blocking round trip on the worker's descriptor socket.
            let (sc, file) = (sc.clone(), file.clone());
            match tokio::task::spawn_blocking(move || sc.open(worker, &file, false)).await {
                Ok(Ok(Some(_))) => Ok(()),
                Ok(Ok(None)) => Err(std::io::Error::new(std::io::ErrorKind::NotFound, "evicted meanwhile")),
                Ok(Err(e)) => Err(e),
                Err(e) => Err(std::io::Error::other(e)),
            }
        };
        match opened.and_then(|()| sc.read(&local, offset, end)) {
            Ok(data) => {
                sc.learn(&file, &local);
                Ok(data)
            }
            Err(e) => {
                sc.fallbacks.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::debug!("short-circuit read failed ({e}); reading through the worker");
                bounded(self.read_from_worker(&file, offset, len, String::new(), true).await?.1.data, offset, end)
            }
        }
    }

    /// One read RPC, with the id of the worker that answered; `recheck` asks the worker to
    /// verify its cache of the range on disk first.
    async fn read_from_worker(&self, file: &pb::FileRef, offset: u64, len: u64, node: String, recheck: bool) -> Result<(u32, pb::ReadReply), ClientError> {
        self.with_worker("read", file, |w| {
            let r = pb::ReadRequest { file: Some(file.clone()), offset, len, short_circuit_node: node.clone(), recheck, client_node: self.node.clone(), ..Default::default() };
            async move { w.read(r).await }
        })
        .await
    }

    /// Reports this process's log filter to the master with each refresh.
    pub fn with_log_control(mut self, log: cistern_rpc::LogControl) -> Client {
        self.log = Some(log);
        self
    }

    /// Short-circuit reads and passthrough files from the workers whose descriptor sockets
    /// are in `dir` (the run directory on this node; `None`: off). Unless disabled by
    /// `CISTERN_NO_SHORT_CIRCUIT`.
    pub fn with_short_circuit(mut self, dir: Option<PathBuf>) -> Client {
        self.short_circuit = dir.and_then(ShortCircuit::new).map(Arc::new);
        self
    }

    /// Bytes read from workers' cache files directly, and reads that fell back to the worker.
    pub fn short_circuit_figures(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        self.short_circuit.as_ref().map_or((0, 0), |s| (s.bytes.load(Relaxed), s.fallbacks.load(Relaxed)))
    }

    /// A read-only descriptor of the cache file holding all of `node`'s bytes, when the
    /// worker that owns it runs on this node and has it complete (and verified): what FUSE
    /// passthrough hands the kernel. `None` otherwise. Blocking (a descriptor socket round
    /// trip): for the FUSE threads.
    pub fn local_file(&self, node: &Inode) -> Result<Option<std::fs::File>, ClientError> {
        let Some(sc) = &self.short_circuit else { return Ok(None) };
        let file = file_ref(node)?;
        let Some((worker, _)) = self.workers.read().expect("workers lock").pick(&file, &self.node) else { return Ok(None) };
        match sc.open(worker, &file, true) {
            Ok(Some((_, f))) => Ok(f.try_clone().ok()),
            Ok(None) => Ok(None),
            // No worker of ours on this node (no socket), or one that refuses: read normally.
            Err(e) => {
                tracing::debug!(worker, "no passthrough file: {e}");
                Ok(None)
            }
        }
    }

    /// Calls the worker that owns `file`, retried across its restarts; with the id of the
    /// worker that answered.
    async fn with_worker<T, F, Fut>(&self, what: &str, file: &pb::FileRef, call: F) -> Result<(u32, T), ClientError>
    where
        F: Fn(Arc<dyn DataService>) -> Fut,
        Fut: std::future::Future<Output = Result<T, Status>>,
    {
        let mut failed = false;
        let answer = with_retry(what, self.backoff, || {
            let first = !std::mem::replace(&mut failed, true);
            let call = &call;
            async move {
                if !first && self.discover {
                    // The worker may have restarted elsewhere or gone: ask the master again.
                    let _ = self.refresh_workers().await;
                }
                let worker = self.workers.read().expect("workers lock").pick(file, &self.node);
                match worker {
                    Some((id, w)) => match call(w).await {
                        Ok(t) => Ok((id, t)),
                        Err(s) => {
                            if !cistern_rpc::retry::is_final(&s) {
                                // Not reached (refused, reset, silent past the keepalive): the
                                // next try goes to the next worker in the file's ranking.
                                tracing::debug!(worker = id, code = ?s.code(), "worker unreachable: {}", s.message());
                                self.workers.write().expect("workers lock").mark_unreachable(id);
                            }
                            Err(s)
                        }
                    },
                    None => Err(Status::unavailable("no worker is ready")),
                }
            }
        })
        .await?;
        Ok(answer)
    }

    /// The log filter the master asks clients to take (`cistern loglevel --target fuse`), as
    /// of the last refresh; empty when it asks for none.
    pub fn wanted_log_level(&self) -> String {
        self.wanted_log_level.lock().expect("log level lock").clone()
    }

    /// The cache figures summed over the live workers, and the UFS file count once known.
    pub async fn stats(&self) -> Result<(CacheStats, Option<u64>), ClientError> {
        let cluster = with_retry("cluster", self.backoff, || self.meta.cluster(None)).await?;
        let mut stats = CacheStats::default();
        for w in &cluster.workers {
            stats.add(&w.figures.clone().unwrap_or_default());
        }
        Ok((stats, cluster.ufs_files))
    }
}
