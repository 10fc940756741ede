//! Other workers as a source of blocks: what makes the workers one cache rather than several.
//!
//! On a miss, before the UFS, a worker asks the workers ranked first for the file (the
//! rendezvous ranking clients place files by, [`cistern_rpc::placement`]):
//! - a replica that is not the file's owner (AlluxioRuntime `spec.data.replicas` > 1) has the
//!   owner read the range ([`pb::PeerRead::Fetch`]): the owner serves it from its cache or
//!   fetches it from the UFS and keeps it, so both hold it and the UFS sends it once;
//! - any other miss asks the first [`FANOUT`] peers for what they hold
//!   ([`pb::PeerRead::CachedOnly`]): the previous owner after a scale-out, the worker that
//!   stood in for this one while it was away, the other replicas.
//!
//! Reads for peers never ask peers in turn, and never join a fetch that waits on a peer (see
//! `Worker::fetch`), so no two workers wait on each other. A peer that fails or misses its
//! deadline is passed over for [`UNREACHABLE_FOR`] and the UFS is read: peers make misses
//! cheaper, they never make a read fail.

use crate::{FileRef, BLOCK_SIZE};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use bytes::Bytes;
use cistern_rpc::pb::worker_client::WorkerClient;
use cistern_rpc::pb;
use cistern_rpc::{placement, Address};
use futures::future::BoxFuture;
use futures::FutureExt;
use std::collections::HashMap;
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};
use tonic::transport::Channel;

/// How many peers a miss asks for what they hold.
pub const FANOUT: usize = 2;
/// How long a peer is given to answer from its cache: a block from a LAN neighbour's disk
/// takes milliseconds; past this the UFS is read.
pub const CACHED_DEADLINE: Duration = Duration::from_millis(500);
/// How long an owner is given to fetch for a replica (it may go to a slow UFS).
pub const FETCH_DEADLINE: Duration = Duration::from_secs(30);
/// How soon the peers are asked for again while some are missing (doubling up to the period).
pub const QUICK_REFRESH: Duration = Duration::from_millis(50);
/// How long a peer that failed is passed over.
pub const UNREACHABLE_FOR: Duration = Duration::from_secs(5);

impl crate::Worker {
    /// Asks these peers on misses from now on ([`crate::peers`]).
    pub fn set_peers(&self, peers: Arc<dyn PeerSource>) {
        let _ = self.peers.set(peers);
    }

    /// `[s, e)` of block `b` from a peer, counted.
    pub(crate) async fn take_from_peers(&self, f: &FileRef, b: u64, s: u64, e: u64) -> Option<Bytes> {
        let data = self.peers.get()?.read(f, b, s, e).await?;
        self.counters.peer_fetched_bytes.fetch_add(data.len() as u64, Ordering::Relaxed);
        Some(data)
    }

    /// Up to `len` bytes at `offset` when every byte of them is cached (a peer's
    /// [`pb::PeerRead::CachedOnly`] read); `None` otherwise. Never the UFS, never a peer.
    ///
    /// [`pb::PeerRead::CachedOnly`]: cistern_rpc::pb::PeerRead::CachedOnly
    pub async fn read_cached_only(&self, f: &FileRef, offset: u64, len: u64) -> Option<Bytes> {
        let end = offset.saturating_add(len).min(f.size);
        if offset >= end {
            return Some(Bytes::new());
        }
        let mut parts = Vec::new();
        for b in offset / BLOCK_SIZE..=(end - 1) / BLOCK_SIZE {
            let base = b * BLOCK_SIZE;
            let (s, e) = (offset.max(base) - base, end.min(base + BLOCK_SIZE) - base);
            let part = match self.recent_range(&f.key, b, s, e) {
                Some(d) => d,
                None => cistern_ufs::Buffer::from(self.cached(&f.key, b, s, e).await?),
            };
            parts.push(part);
        }
        // One copy into the reply's buffer, none when the range lies in one part.
        let data = crate::fetch::join(parts).to_bytes();
        self.counters.peer_served_bytes.fetch_add(data.len() as u64, Ordering::Relaxed);
        Some(data)
    }
}

/// Where a worker finds blocks it misses, before the UFS.
pub trait PeerSource: Send + Sync {
    /// True when a miss of `f` here goes to the owner's fetch (this worker is one of the
    /// file's replicas, not its owner).
    fn delegates(&self, f: &FileRef) -> bool;
    /// `[s, e)` of block `b` of `f`, exactly that long, from a peer; `None` when no peer has
    /// it (or none answered in time).
    fn read(&self, f: &FileRef, b: u64, s: u64, e: u64) -> BoxFuture<'_, Option<Bytes>>;
}

struct Peer {
    identity: u64,
    address: String,
    client: WorkerClient<Channel>,
}

/// The other workers of the Dataset, as the master lists them, over gRPC.
pub struct GrpcPeers {
    identity: u64,
    node: String,
    peers: RwLock<(Vec<Peer>, u32)>,
    unreachable: Mutex<HashMap<u64, Instant>>,
}

/// What a miss of one file does.
enum Plan {
    /// Have the owner fetch it.
    Fetch(WorkerClient<Channel>, u64),
    /// Ask these peers for what they hold, best first.
    CachedOnly(Vec<(WorkerClient<Channel>, u64)>),
}

impl GrpcPeers {
    /// The peers of the worker with `identity` on `node`; none until [`GrpcPeers::update`].
    pub fn new(identity: u64, node: String) -> GrpcPeers {
        GrpcPeers { identity, node, peers: RwLock::new((Vec::new(), 1)), unreachable: Mutex::default() }
    }

    /// Takes the master's list of live workers (itself left out) and the data replicas.
    pub fn update(&self, cluster: &pb::ClusterReply) {
        let mut guard = self.peers.write().expect("peers lock");
        let old = std::mem::take(&mut guard.0);
        let mut next = Vec::new();
        for w in cluster.workers.iter().filter(|w| w.identity != self.identity) {
            let client = match old.iter().find(|p| p.address == w.address) {
                Some(p) => p.client.clone(),
                // A worker reports a TCP address over TCP (the master checks); a Unix socket
                // only from this node's own processes.
                None => match Address::parse(&w.address).and_then(|a| a.channel(cistern_rpc::tls::Role::Worker)) {
                    Ok(ch) => WorkerClient::new(ch).max_decoding_message_size(cistern_rpc::MAX_MESSAGE),
                    Err(e) => {
                        tracing::debug!(peer = %w.address, "unusable peer address: {e}");
                        continue;
                    }
                },
            };
            next.push(Peer { identity: w.identity, address: w.address.clone(), client });
        }
        *guard = (next, cluster.data_replicas.max(1));
    }

    /// Follows the master's list every `period`, for as long as the task runs. While the list
    /// has fewer workers than the runtime asks for (at start, while a newcomer registers, while
    /// one is away) it asks again sooner: [`QUICK_REFRESH`] after each change, doubling up to
    /// `period`, so the first misses after a start already know the peers.
    ///
    /// With `log`, the worker also takes the log filter the master asks workers for
    /// (`cistern loglevel --target workers`), once per change.
    pub async fn follow(self: std::sync::Arc<Self>, master: cistern_rpc::MasterSet, period: Duration, log: Option<cistern_rpc::LogControl>) {
        let (mut quick, mut known) = (QUICK_REFRESH, usize::MAX);
        let mut applied = String::new();
        loop {
            let whole = match tokio::time::timeout(period.max(Duration::from_secs(1)), master.call(|mut m| async move { m.cluster(pb::ClusterRequest::default()).await })).await {
                Ok(Ok(reply)) => {
                    let reply = reply.into_inner();
                    self.update(&reply);
                    if let (Some(log), false) = (log, reply.worker_log_level.is_empty() || reply.worker_log_level == applied) {
                        match (log.set)(&reply.worker_log_level) {
                            Ok(()) => tracing::info!(level = %reply.worker_log_level, "log level set by the master"),
                            Err(e) => tracing::warn!("the master's log level for workers: {e}"),
                        }
                        applied = reply.worker_log_level.clone();
                    }
                    if reply.workers.len() != known {
                        (quick, known) = (QUICK_REFRESH, reply.workers.len());
                    }
                    reply.workers.len() as u32 >= reply.replicas
                }
                Ok(Err(e)) => {
                    tracing::debug!(code = ?e.code(), "peers: the master's list: {}", e.message());
                    false
                }
                Err(_) => {
                    tracing::debug!("peers: the master did not answer in time");
                    false
                }
            };
            let wait = if whole {
                period
            } else {
                let next = (quick * 2).min(period);
                std::mem::replace(&mut quick, next)
            };
            tokio::time::sleep(wait).await;
        }
    }

    /// Hands `files` to the workers that own them once this one is gone ([`crate::handoff`]):
    /// grouped by the peer ranked first for each, sent in batches to all owners at once, until
    /// `deadline`. Returns the files handed over and the bytes their owners took.
    pub async fn hand_off(&self, files: Vec<pb::FileRef>, deadline: Duration) -> (u64, u64) {
        use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
        let mut groups: HashMap<u64, (WorkerClient<Channel>, Vec<pb::FileRef>)> = HashMap::new();
        {
            let guard = self.peers.read().expect("peers lock");
            for f in files {
                let key = placement::key(f.mount, &f.path);
                let Some(owner) = guard.0.iter().max_by_key(|p| (placement::score(p.identity, key), p.identity)) else { break };
                groups.entry(owner.identity).or_insert_with(|| (owner.client.clone(), Vec::new())).1.push(f);
            }
        }
        let (handed, taken) = (AtomicU64::new(0), AtomicU64::new(0));
        let sends = groups.into_iter().map(|(identity, (mut client, files))| {
            let (handed, taken) = (&handed, &taken);
            async move {
                for batch in files.chunks(crate::handoff::MAX_WARM_FILES) {
                    match client.warm(pb::WarmRequest { files: batch.to_vec() }).await {
                        Ok(reply) => {
                            handed.fetch_add(batch.len() as u64, Relaxed);
                            taken.fetch_add(reply.into_inner().bytes, Relaxed);
                        }
                        Err(e) => {
                            tracing::warn!(peer = format_args!("{identity:016x}"), code = ?e.code(), "hand-off: {}", e.message());
                            return;
                        }
                    }
                }
            }
        });
        if tokio::time::timeout(deadline, futures::future::join_all(sends)).await.is_err() {
            tracing::warn!("hand-off: not finished within {deadline:?}; the rest will be read from the UFS again");
        }
        (handed.load(Relaxed), taken.load(Relaxed))
    }

    fn passed_over(&self, identity: u64) -> bool {
        self.unreachable.lock().expect("unreachable lock").get(&identity).is_some_and(|at| at.elapsed() < UNREACHABLE_FOR)
    }

    fn mark_unreachable(&self, identity: u64) {
        self.unreachable.lock().expect("unreachable lock").insert(identity, Instant::now());
    }

    /// What a miss of `f` does: this worker's place in the file's ranking decides.
    fn plan(&self, f: &FileRef) -> Option<Plan> {
        let signed = f.signed.as_ref()?;
        let key = placement::key(signed.mount, &signed.path);
        let guard = self.peers.read().expect("peers lock");
        let (peers, replicas) = (&guard.0, guard.1 as usize);
        let mut ranked: Vec<&Peer> = peers.iter().filter(|p| !self.passed_over(p.identity)).collect();
        if ranked.is_empty() {
            return None;
        }
        ranked.sort_unstable_by_key(|p| std::cmp::Reverse((placement::score(p.identity, key), p.identity)));
        let mine = (placement::score(self.identity, key), self.identity);
        let my_rank = ranked.iter().take_while(|p| (placement::score(p.identity, key), p.identity) > mine).count();
        if replicas > 1 && my_rank > 0 && my_rank < replicas {
            return Some(Plan::Fetch(ranked[0].client.clone(), ranked[0].identity));
        }
        Some(Plan::CachedOnly(ranked.iter().take(FANOUT).map(|p| (p.client.clone(), p.identity)).collect()))
    }

    async fn ask(&self, mut client: WorkerClient<Channel>, identity: u64, r: pb::ReadRequest, deadline: Duration) -> Option<Bytes> {
        let want = r.len;
        match tokio::time::timeout(deadline, client.read(r)).await {
            Ok(Ok(reply)) => {
                let reply = reply.into_inner();
                if reply.not_cached || reply.data.len() as u64 != want {
                    tracing::debug!(peer = format_args!("{identity:016x}"), not_cached = reply.not_cached, got = reply.data.len(), want, "peer read: nothing usable");
                    return None;
                }
                Some(reply.data)
            }
            Ok(Err(e)) => {
                if !cistern_rpc::retry::is_final(&e) {
                    self.mark_unreachable(identity);
                }
                tracing::debug!(peer = format_args!("{identity:016x}"), code = ?e.code(), "peer read: {}", e.message());
                None
            }
            Err(_) => {
                self.mark_unreachable(identity);
                tracing::debug!(peer = format_args!("{identity:016x}"), "peer read: no answer within {deadline:?}");
                None
            }
        }
    }
}

impl PeerSource for GrpcPeers {
    fn delegates(&self, f: &FileRef) -> bool {
        matches!(self.plan(f), Some(Plan::Fetch(..)))
    }

    fn read(&self, f: &FileRef, b: u64, s: u64, e: u64) -> BoxFuture<'_, Option<Bytes>> {
        let (plan, signed) = (self.plan(f), f.signed.clone());
        async move {
            let (plan, signed) = (plan?, signed?);
            match &plan {
                Plan::Fetch(_, owner) => tracing::debug!(path = %signed.path, owner = format_args!("{owner:016x}"), "peer plan: the owner fetches"),
                Plan::CachedOnly(peers) => tracing::debug!(path = %signed.path, peers = peers.len(), "peer plan: cached only"),
            }
            let request = |peer: pb::PeerRead| pb::ReadRequest {
                file: Some(signed.clone()),
                offset: b * crate::BLOCK_SIZE + s,
                len: e - s,
                client_node: self.node.clone(),
                peer: peer as i32,
                ..Default::default()
            };
            match plan {
                Plan::Fetch(client, identity) => self.ask(client, identity, request(pb::PeerRead::Fetch), FETCH_DEADLINE).await,
                Plan::CachedOnly(peers) => {
                    // All at once: a peer that went silent costs the deadline once, not once
                    // per peer, and the first that has it answers.
                    use futures::StreamExt;
                    let mut asks: futures::stream::FuturesUnordered<_> = peers
                        .into_iter()
                        .map(|(client, identity)| self.ask(client, identity, request(pb::PeerRead::CachedOnly), CACHED_DEADLINE))
                        .collect();
                    while let Some(answer) = asks.next().await {
                        if answer.is_some() {
                            return answer;
                        }
                    }
                    None
                }
            }
        }
        .boxed()
    }
}
