//! The master's gRPC service: the namespace to clients, and the registry where workers report
//! themselves with a heartbeat (as Alluxio workers do), which is how clients find workers and
//! how statuses know how many are ready.

use crate::{Inode, Kind, MetaError, Namespace, Summary};
use cistern_rpc::pb;
use cistern_rpc::pb::master_server::{Master, MasterServer};
use cistern_rpc::pb::worker_client::WorkerClient;
use cistern_rpc::tls::{self, Peer, Role};
use cistern_rpc::{status_with_errno, Address, Errno, RefKey};
use tonic::transport::Channel;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tonic::{Request, Response, Status};

/// A worker that has not reported for this long is not counted as ready nor given to clients.
pub const WORKER_TIMEOUT: Duration = Duration::from_secs(5);
/// A worker silent for this long is forgotten (its figures with it).
pub const WORKER_FORGOTTEN: Duration = Duration::from_secs(600);
/// Most workers the registry holds; a report past it is refused.
pub const MAX_WORKERS: usize = 4096;

impl From<&Inode> for pb::Inode {
    fn from(n: &Inode) -> Self {
        pb::Inode {
            ino: n.ino,
            parent: n.parent,
            name: n.name.clone(),
            dir: n.is_dir(),
            size: n.size,
            mtime_secs: n.mtime.0,
            mtime_nanos: n.mtime.1,
            etag: n.etag.clone(),
            mount: n.mount.map(|m| m as u32),
            ufs_path: n.ufs_path.clone(),
            file: n.file_ref.clone(),
        }
    }
}

impl From<pb::Inode> for Inode {
    fn from(n: pb::Inode) -> Self {
        Inode {
            ino: n.ino,
            parent: n.parent,
            name: n.name,
            kind: if n.dir { Kind::Dir } else { Kind::File },
            size: n.size,
            mtime: (n.mtime_secs, n.mtime_nanos),
            etag: n.etag,
            mount: n.mount.map(|m| m as usize),
            ufs_path: n.ufs_path,
            file_ref: n.file,
        }
    }
}

pub(crate) fn status(e: MetaError) -> Status {
    if e.retryable {
        return Status::unavailable(e.message);
    }
    status_with_errno(e.errno, e.message)
}

/// The workers that reported, with when they last did.
#[derive(Default)]
pub struct WorkerRegistry {
    workers: Mutex<BTreeMap<u32, (Instant, pb::WorkerInfo)>>,
    /// Channels to the workers, by address, for [`WorkerRegistry::poll`].
    clients: Mutex<std::collections::HashMap<String, WorkerClient<Channel>>>,
    /// The last figures of each FUSE client, by node and process id.
    fuse_reports: Mutex<BTreeMap<(String, u32), (Instant, pb::ClientReport)>>,
}

/// FUSE clients whose figures are kept, at most, and how long after their last report.
pub const MAX_FUSE_CLIENTS: usize = 1024;
pub const FUSE_CLIENT_FORGOTTEN: Duration = Duration::from_secs(60);

impl WorkerRegistry {
    /// Records a worker's report; false when the registry is full of live workers.
    pub fn report(&self, r: pb::WorkerReport) -> bool {
        let info = pb::WorkerInfo { id: r.id, address: r.address, figures: r.figures, identity: r.identity, node: r.node, log_level: r.log_level };
        let mut workers = self.workers.lock().expect("registry lock");
        workers.retain(|_, (at, _)| at.elapsed() < WORKER_FORGOTTEN);
        if workers.len() >= MAX_WORKERS && !workers.contains_key(&r.id) {
            return false;
        }
        workers.insert(r.id, (Instant::now(), info));
        true
    }

    /// The workers heard from within [`WORKER_TIMEOUT`], by id.
    pub fn live(&self) -> Vec<pb::WorkerInfo> {
        let workers = self.workers.lock().expect("registry lock");
        workers.values().filter(|(at, _)| at.elapsed() < WORKER_TIMEOUT).map(|(_, w)| w.clone()).collect()
    }

    /// Asks every live worker for its figures now, so that what the web port and the status
    /// show is not a heartbeat old. A worker that does not answer within a second keeps its
    /// last report.
    pub async fn poll(&self) {
        let calls = self.live().into_iter().filter_map(|w| {
            let mut client = self.client_for(&w.address)?;
            Some(async move {
                let r = tokio::time::timeout(Duration::from_secs(1), client.figures(pb::FiguresRequest {})).await;
                (w, r)
            })
        });
        for (mut w, r) in futures::future::join_all(calls).await {
            if let Ok(Ok(figures)) = r {
                w.figures = Some(figures.into_inner());
                self.workers.lock().expect("registry lock").insert(w.id, (Instant::now(), w));
            }
        }
    }

    /// A channel to the worker at `address` (kept for the next call).
    fn client_for(&self, address: &str) -> Option<WorkerClient<Channel>> {
        let mut clients = self.clients.lock().expect("registry lock");
        if let Some(c) = clients.get(address) {
            return Some(c.clone());
        }
        let c = WorkerClient::new(Address::parse(address).ok()?.channel(cistern_rpc::tls::Role::Worker).ok()?);
        clients.insert(address.to_string(), c.clone());
        Some(c)
    }

    /// Bytes of each file cached on any live worker (the most any one holds: replicas are
    /// copies); 0 for a file no worker answered about within 2 s.
    pub async fn cached(&self, files: &[pb::FileRef]) -> Vec<u64> {
        let mut out = vec![0u64; files.len()];
        let calls = self.live().into_iter().filter_map(|w| {
            let client = self.client_for(&w.address)?;
            Some(async move {
                let mut got = Vec::with_capacity(files.len());
                for batch in files.chunks(cistern_rpc::MAX_CACHED_FILES) {
                    let request = pb::CachedRequest { files: batch.to_vec() };
                    match tokio::time::timeout(Duration::from_secs(2), client.clone().cached(request)).await {
                        Ok(Ok(r)) if r.get_ref().bytes.len() == batch.len() => got.extend(r.into_inner().bytes),
                        _ => return None,
                    }
                }
                Some(got)
            })
        });
        for got in futures::future::join_all(calls).await.into_iter().flatten() {
            for (o, g) in out.iter_mut().zip(got) {
                *o = (*o).max(g);
            }
        }
        out
    }

    /// Records a FUSE client's figures (validated: a bounded node name, well-formed
    /// histograms); false when the table is full of other clients.
    pub fn report_fuse(&self, mut r: pb::ClientReport) -> bool {
        if r.node.len() > 253 || !r.node.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.') {
            r.node = "invalid".into();
        }
        r.fuse_latency = cistern_rpc::latency::validated(std::mem::take(&mut r.fuse_latency));
        if r.log_level.len() > crate::log_levels::MAX_LEVEL_LEN {
            r.log_level = "(too long)".into();
        }
        let mut reports = self.fuse_reports.lock().expect("registry lock");
        reports.retain(|_, (at, _)| at.elapsed() < FUSE_CLIENT_FORGOTTEN);
        let key = (r.node.clone(), r.pid);
        if reports.len() >= MAX_FUSE_CLIENTS && !reports.contains_key(&key) {
            return false;
        }
        reports.insert(key, (Instant::now(), r));
        true
    }

    /// The FUSE clients heard from within [`FUSE_CLIENT_FORGOTTEN`].
    pub fn fuse_reports(&self) -> Vec<pb::ClientReport> {
        let reports = self.fuse_reports.lock().expect("registry lock");
        reports.values().filter(|(at, _)| at.elapsed() < FUSE_CLIENT_FORGOTTEN).map(|(_, r)| r.clone()).collect()
    }

    /// Every worker heard from in the last [`WORKER_FORGOTTEN`], with how long ago, by id.
    pub fn entries(&self) -> Vec<(pb::WorkerInfo, Duration)> {
        let workers = self.workers.lock().expect("registry lock");
        workers.values().map(|(at, w)| (w.clone(), at.elapsed())).collect()
    }

    /// The last figures of every worker ever heard from (a dead worker's cache is still on disk).
    pub fn last_figures(&self) -> Vec<(u32, pb::WorkerFigures)> {
        let workers = self.workers.lock().expect("registry lock");
        workers.values().map(|(_, w)| (w.id, w.figures.clone().unwrap_or_default())).collect()
    }
}

pub struct MasterService {
    pub ns: Arc<Namespace>,
    pub registry: Arc<WorkerRegistry>,
    pub summary: Arc<Mutex<Summary>>,
    /// The desired workers (the runtime's `replicas`). Shared with whoever re-reads the
    /// configuration, so `kubectl scale` reaches the clients.
    pub replicas: Arc<std::sync::atomic::AtomicU32>,
    /// On how many workers each file is kept (see `DatasetPlan::data_replicas`).
    pub data_replicas: u32,
    /// The log filters of the master, the workers and the FUSE clients.
    pub log_levels: Arc<crate::log_levels::LogLevels>,
    /// Signs the file references clients hand to workers.
    pub refs: RefKey,
}

impl MasterService {
    /// `node` as a client receives it: a file with the reference its workers read it by.
    fn reply(&self, node: &Inode) -> pb::Inode {
        let mut out = pb::Inode::from(node);
        out.file = node.sign_ref(&self.refs);
        out
    }

    pub fn into_server(self) -> MasterServer<MasterService> {
        MasterServer::new(self)
            .max_decoding_message_size(cistern_rpc::MAX_MESSAGE)
            .max_encoding_message_size(cistern_rpc::MAX_MESSAGE)
    }
}

#[tonic::async_trait]
impl Master for MasterService {
    async fn get_attr(&self, r: Request<pb::GetAttrRequest>) -> Result<Response<pb::Inode>, Status> {
        let node = self.ns.getattr(r.into_inner().ino).map_err(status)?;
        Ok(Response::new(self.reply(&node)))
    }

    async fn lookup(&self, r: Request<pb::LookupRequest>) -> Result<Response<pb::Inode>, Status> {
        let r = r.into_inner();
        let node = self.ns.lookup(r.parent, &r.name).await.map_err(status)?;
        Ok(Response::new(self.reply(&node)))
    }

    async fn read_dir(&self, r: Request<pb::ReadDirRequest>) -> Result<Response<pb::ReadDirReply>, Status> {
        let r = r.into_inner();
        let entries = self.ns.readdir_synced(r.ino, r.sync).await.map_err(status)?;
        if r.limit > 0 && entries.len() > r.limit as usize {
            return Ok(Response::new(pb::ReadDirReply { entries: Vec::new(), over_limit: true }));
        }
        Ok(Response::new(pb::ReadDirReply { entries: entries.iter().map(|n| self.reply(n)).collect(), over_limit: false }))
    }

    async fn heartbeat(&self, r: Request<pb::WorkerReport>) -> Result<Response<pb::HeartbeatReply>, Status> {
        // Only a worker registers a worker: clients would otherwise name the addresses other
        // clients read from (and the master would dial them).
        let peer = tls::peer_role(&r);
        if !matches!(peer, Peer::Local | Peer::Authenticated(Role::Worker)) {
            return Err(status_with_errno(Errno::PermissionDenied, format!("heartbeat: only a worker's certificate may register a worker (this peer: {peer:?})")));
        }
        let report = r.into_inner();
        let address = Address::parse(&report.address).map_err(|e| status_with_errno(Errno::InvalidArgument, format!("heartbeat: address {e}")))?;
        // A worker on another node is reached over TCP; a path would name a socket on the
        // reader's own node.
        if peer != Peer::Local && !matches!(address, Address::Tcp(_)) {
            return Err(status_with_errno(Errno::InvalidArgument, "heartbeat: a worker reporting over TCP must give a HOST:PORT address"));
        }
        // A node name is a DNS subdomain (at most 253 characters); it is shown, never used as a path.
        if report.node.len() > 253 || report.node.chars().any(|c| !(c.is_ascii_alphanumeric() || c == '-' || c == '.')) {
            return Err(status_with_errno(Errno::InvalidArgument, "heartbeat: node must be a Kubernetes node name (DNS subdomain, at most 253 characters)"));
        }
        if report.id >= MAX_WORKERS as u32 {
            return Err(status_with_errno(Errno::InvalidArgument, format!("heartbeat: worker id {} is not below {MAX_WORKERS}", report.id)));
        }
        if !self.registry.report(report) {
            return Err(status_with_errno(Errno::NoSpace, format!("heartbeat: {MAX_WORKERS} workers are registered already")));
        }
        Ok(Response::new(pb::HeartbeatReply {}))
    }

    async fn set_log_level(&self, r: Request<pb::SetLogLevelRequest>) -> Result<Response<pb::LogLevels>, Status> {
        // Any of the Dataset's certificates (the CLI holds the client's); none over TCP is
        // refused at the handshake already.
        let peer = tls::peer_role(&r);
        if matches!(peer, Peer::Unknown) {
            return Err(status_with_errno(Errno::PermissionDenied, "set log level: the Dataset's certificate is needed"));
        }
        let r = r.into_inner();
        self.log_levels.set(&r.target, &r.level).map_err(|e| status_with_errno(Errno::InvalidArgument, format!("set log level: {e}")))?;
        tracing::info!(target_component = %r.target, level = %r.level, "log level set");
        Ok(Response::new(pb::LogLevels {
            master: self.log_levels.master(),
            workers: self.log_levels.workers(),
            fuse: self.log_levels.fuse(),
            reported: self.registry.live(),
        }))
    }

    async fn cluster(&self, r: Request<pb::ClusterRequest>) -> Result<Response<pb::ClusterReply>, Status> {
        let peer = cistern_rpc::tls::peer_role(&r);
        if let Some(report) = r.into_inner().client {
            // Figures only from a client's certificate (or the node-local socket).
            if matches!(peer, cistern_rpc::tls::Peer::Local | cistern_rpc::tls::Peer::Authenticated(cistern_rpc::tls::Role::Client)) {
                self.registry.report_fuse(report);
            }
        }
        let (files, total) = match &*self.summary.lock().expect("summary lock") {
            Summary::Done(s) => (Some(s.files), Some(s.total_bytes)),
            _ => (None, None),
        };
        Ok(Response::new(pb::ClusterReply {
            workers: self.registry.live(),
            replicas: self.replicas.load(std::sync::atomic::Ordering::Relaxed),
            data_replicas: self.data_replicas.max(1),
            worker_log_level: self.log_levels.workers(),
            fuse_log_level: self.log_levels.fuse(),
            ufs_files: files,
            ufs_total_bytes: total,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inodes_cross_the_wire_unchanged() {
        let n = Inode {
            ino: 9,
            parent: 1,
            name: "a b.txt".into(),
            kind: Kind::File,
            size: 42,
            mtime: (1_700_000_000, 5),
            etag: Some("\"e\"".into()),
            mount: Some(1),
            ufs_path: "x/a b.txt".into(),
                    file_ref: None,
        };
        assert_eq!(Inode::from(pb::Inode::from(&n)), n);
        let d = Inode { kind: Kind::Dir, etag: None, mount: None, ..n };
        assert_eq!(Inode::from(pb::Inode::from(&d)), d);
    }

    #[test]
    fn workers_silent_for_too_long_are_not_live() {
        let reg = WorkerRegistry::default();
        reg.report(pb::WorkerReport { id: 0, address: "unix:/w0".into(), figures: None, ..Default::default() });
        reg.report(pb::WorkerReport { id: 1, address: "unix:/w1".into(), figures: None, ..Default::default() });
        reg.workers.lock().unwrap().get_mut(&1).unwrap().0 -= WORKER_TIMEOUT;
        let live: Vec<u32> = reg.live().iter().map(|w| w.id).collect();
        assert_eq!(live, vec![0]);
        assert_eq!(reg.last_figures().len(), 2);
    }
}
