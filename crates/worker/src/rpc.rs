//! The worker's gRPC service (reads and figures), and its heartbeat to the master.

use crate::{Caller, FileRef, Served, Worker, WorkerError};
use bytes::Bytes;
use cistern_rpc::pb;
use cistern_rpc::pb::master_client::MasterClient;
use cistern_rpc::pb::worker_server::{Worker as WorkerRpc, WorkerServer};
use cistern_rpc::{status_with_errno, Errno, RefKey};
use cistern_ufs::Ufs;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tonic::{Request, Response, Status};

impl Worker {
    /// This worker's cache figures, as reported to the master and shown in statuses.
    pub fn figures(&self) -> pb::WorkerFigures {
        let c = &self.counters;
        pb::WorkerFigures {
            cached_bytes: self.cached_bytes(),
            capacity_bytes: self.capacity(),
            local_bytes: c.local_bytes.load(Ordering::Relaxed),
            remote_bytes: c.remote_bytes.load(Ordering::Relaxed),
            ufs_bytes: c.ufs_bytes.load(Ordering::Relaxed),
            ufs_fetches: c.ufs_fetches.load(Ordering::Relaxed),
            ufs_fetched_bytes: c.ufs_fetched_bytes.load(Ordering::Relaxed),
            corrupt_blocks: self.corrupt_blocks(),
            short_circuit_bytes: c.short_circuit_bytes.load(Ordering::Relaxed),
            cache_errors: c.cache_errors.load(Ordering::Relaxed),
            ufs_latency: self.ufs_latency.snapshot(),
            process: Some(cistern_rpc::latency::process_figures()),
            peer_served_bytes: c.peer_served_bytes.load(Ordering::Relaxed),
            peer_fetched_bytes: c.peer_fetched_bytes.load(Ordering::Relaxed),
            levels: self
                .cache()
                .stats()
                .into_iter()
                .map(|l| pb::LevelFigures {
                    medium: l.medium,
                    used_bytes: l.used,
                    quota_bytes: l.quota,
                    evicted_bytes: l.evicted_bytes,
                    demoted_bytes: l.demoted_bytes,
                    on_disk_bytes: l.on_disk,
                })
                .collect(),
        }
    }
}

/// Serves a worker's reads; `mounts` are the Dataset's UFSes in mount order (the index a
/// [`pb::FileRef`] names); `refs` verifies the references the master signed.
pub struct WorkerService {
    pub worker: Arc<Worker>,
    pub mounts: Vec<Ufs>,
    pub refs: RefKey,
}

impl WorkerService {
    pub fn into_server(self) -> WorkerServer<WorkerService> {
        WorkerServer::new(self)
            .max_decoding_message_size(cistern_rpc::MAX_MESSAGE)
            .max_encoding_message_size(cistern_rpc::MAX_MESSAGE)
    }

    /// The worker-side reference of a file named on the wire: only one the master signed,
    /// with the cache key derived here (never a name the peer chose).
    pub fn file_ref(&self, f: Option<pb::FileRef>) -> Result<FileRef, Status> {
        let f = f.ok_or_else(|| status_with_errno(Errno::InvalidArgument, "no file reference in the request"))?;
        let v = self.refs.verify(&f).map_err(|e| status_with_errno(e.errno(), e.to_string()))?;
        let ufs = self.mounts.get(v.mount as usize).ok_or_else(|| {
            status_with_errno(Errno::InvalidArgument, format!("mount {} does not exist (this worker serves {})", v.mount, self.mounts.len()))
        })?;
        Ok(FileRef { ufs: ufs.clone(), path: v.path, size: v.size, key: v.key, etag: v.etag, mtime: v.mtime, signed: Some(f) })
    }
}

fn status(e: WorkerError) -> Status {
    status_with_errno(e.errno(), e.to_string())
}

#[tonic::async_trait]
impl WorkerRpc for WorkerService {
    async fn read(&self, r: Request<pb::ReadRequest>) -> Result<Response<pb::ReadReply>, Status> {
        let peer = cistern_rpc::tls::peer_role(&r);
        let r = r.into_inner();
        let mode = pb::PeerRead::try_from(r.peer).map_err(|_| status_with_errno(Errno::InvalidArgument, format!("read: peer mode {} is not one this worker knows", r.peer)))?;
        if mode != pb::PeerRead::NotAPeer && !matches!(peer, cistern_rpc::tls::Peer::Local | cistern_rpc::tls::Peer::Authenticated(cistern_rpc::tls::Role::Worker)) {
            return Err(status_with_errno(Errno::PermissionDenied, format!("read: only a worker's certificate may read as a peer (this peer: {peer:?})")));
        }
        // Refused, not clamped: the reply's buffer is sized by the read, and a peer asking for
        // more than any client reads at once is confused or hostile.
        if r.len > cistern_rpc::MAX_READ_LEN {
            return Err(status(WorkerError::TooLarge(r.len)));
        }
        let file = self.file_ref(r.file)?;
        static NODE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        let here = NODE.get_or_init(cistern_rpc::node_name);
        let short_circuit = !r.short_circuit_node.is_empty() && r.short_circuit_node == *here;
        tracing::debug!(path = %file.path, offset = r.offset, len = r.len, client_node = %r.client_node, peer = ?mode, "read");
        let caller = Caller { short_circuit, remote: !r.client_node.is_empty() && r.client_node != *here, for_peer: mode == pb::PeerRead::Fetch };
        if r.prefetch && mode == pb::PeerRead::NotAPeer {
            if r.len == 0 {
                self.worker.prefetch(&file).await.map_err(status)?;
            } else {
                self.worker.prefetch_range(&file, r.offset, r.offset.saturating_add(r.len)).await.map_err(status)?;
            }
            return Ok(Response::new(pb::ReadReply::default()));
        }
        if mode == pb::PeerRead::CachedOnly {
            let reply = match self.worker.read_cached_only(&file, r.offset, r.len).await {
                Some(data) => pb::ReadReply { data, ..Default::default() },
                None => pb::ReadReply { not_cached: true, ..Default::default() },
            };
            return Ok(Response::new(reply));
        }
        if r.recheck {
            // Reads the range back from disk: on the blocking pool.
            let (worker, f) = (self.worker.clone(), file.clone());
            let (offset, len) = (r.offset, r.len);
            tokio::task::spawn_blocking(move || worker.recheck(&f, offset, len))
                .await
                .map_err(|e| status_with_errno(Errno::Io, format!("recheck: {e}")))?
                .map_err(status)?;
        }
        let reply = match self.worker.serve(&file, r.offset, r.len, caller).await.map_err(status)? {
            Served::Bytes(data) => pb::ReadReply { data, ..Default::default() },
            Served::Local(l) => pb::ReadReply {
                data: Bytes::new(),
                not_cached: false,
                local: Some(pb::LocalRange {
                    file_id: l.file_id,
                    offset: l.offset,
                    end: l.end,
                    crcs: l.crcs,
                }),
            },
        };
        Ok(Response::new(reply))
    }

    async fn figures(&self, _r: Request<pb::FiguresRequest>) -> Result<Response<pb::WorkerFigures>, Status> {
        Ok(Response::new(self.worker.figures()))
    }

    async fn warm(&self, r: Request<pb::WarmRequest>) -> Result<Response<pb::WarmReply>, Status> {
        let peer = cistern_rpc::tls::peer_role(&r);
        if !matches!(peer, cistern_rpc::tls::Peer::Local | cistern_rpc::tls::Peer::Authenticated(cistern_rpc::tls::Role::Worker)) {
            return Err(status_with_errno(Errno::PermissionDenied, format!("warm: only a worker's certificate may hand files over (this peer: {peer:?})")));
        }
        let files = r.into_inner().files;
        if files.len() > crate::handoff::MAX_WARM_FILES {
            return Err(status_with_errno(Errno::InvalidArgument, format!("warm: {} files in one request; at most {}", files.len(), crate::handoff::MAX_WARM_FILES)));
        }
        // Every reference verified before any is warmed: a forged one refuses the batch.
        let files = files.into_iter().map(|f| self.file_ref(Some(f))).collect::<Result<Vec<_>, _>>()?;
        let mut bytes = 0;
        for f in &files {
            bytes += self.worker.warm(f).await;
        }
        Ok(Response::new(pb::WarmReply { bytes }))
    }

    async fn cached(&self, r: Request<pb::CachedRequest>) -> Result<Response<pb::CachedReply>, Status> {
        let files = r.into_inner().files;
        if files.len() > cistern_rpc::MAX_CACHED_FILES {
            return Err(status_with_errno(Errno::InvalidArgument, format!("cached: {} files in one request; at most {}", files.len(), cistern_rpc::MAX_CACHED_FILES)));
        }
        let mut bytes = Vec::with_capacity(files.len());
        for f in files {
            let f = self.file_ref(Some(f))?;
            bytes.push(self.worker.cache().cached_bytes_of(&f.key).min(f.size));
        }
        Ok(Response::new(pb::CachedReply { bytes }))
    }
}

/// Reports the worker to the master every `period`, for as long as the task runs. A master
/// that is down (restarting) is simply tried again at the next beat.
/// `log`: how the worker's log filter is read, reported with each beat.
pub async fn heartbeat(mut master: MasterClient<tonic::transport::Channel>, worker: Arc<Worker>, address: String, node: String, period: Duration, log: Option<cistern_rpc::LogControl>) {
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut reached = None;
    loop {
        tick.tick().await;
        let report = pb::WorkerReport { id: worker.id as u32, address: address.clone(), figures: Some(worker.figures()), identity: worker.identity, node: node.clone(), log_level: log.map(|l| (l.current)()).unwrap_or_default() };
        let ok = match master.heartbeat(report).await {
            Ok(_) => true,
            Err(e) => {
                tracing::debug!(code = ?e.code(), "heartbeat: {}", e.message());
                false
            }
        };
        if reached != Some(ok) {
            if ok {
                tracing::info!("registered with the master");
            } else {
                tracing::warn!("the master is unreachable; retrying every {period:?}");
            }
            reached = Some(ok);
        }
    }
}
