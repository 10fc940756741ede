//! The worker's gRPC service (reads and figures), and its heartbeat to the master.

use crate::{FileRef, Served, Worker, WorkerError};
use bytes::Bytes;
use cistern_rpc::pb;
use cistern_rpc::pb::master_client::MasterClient;
use cistern_rpc::pb::worker_server::{Worker as WorkerRpc, WorkerServer};
use cistern_rpc::{status_with_errno, RefKey};
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
            remote_bytes: 0,
            ufs_bytes: c.ufs_bytes.load(Ordering::Relaxed),
            ufs_fetches: c.ufs_fetches.load(Ordering::Relaxed),
            ufs_fetched_bytes: c.ufs_fetched_bytes.load(Ordering::Relaxed),
            corrupt_blocks: self.corrupt_blocks(),
            short_circuit_bytes: c.short_circuit_bytes.load(Ordering::Relaxed),
            cache_errors: c.cache_errors.load(Ordering::Relaxed),
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
        let f = f.ok_or_else(|| status_with_errno(22, "no file reference in the request"))?;
        let v = self.refs.verify(&f).map_err(|e| status_with_errno(e.errno(), e.to_string()))?;
        let ufs = self.mounts.get(v.mount as usize).ok_or_else(|| {
            status_with_errno(22, format!("mount {} does not exist (this worker serves {})", v.mount, self.mounts.len()))
        })?;
        Ok(FileRef { ufs: ufs.clone(), path: v.path, size: v.size, key: v.key, etag: v.etag, mtime: v.mtime })
    }
}

fn status(e: WorkerError) -> Status {
    status_with_errno(e.errno(), e.to_string())
}

#[tonic::async_trait]
impl WorkerRpc for WorkerService {
    async fn read(&self, r: Request<pb::ReadRequest>) -> Result<Response<pb::ReadReply>, Status> {
        let r = r.into_inner();
        // Refused, not clamped: the reply's buffer is sized by the read, and a peer asking for
        // more than any client reads at once is confused or hostile.
        if r.len > cistern_rpc::MAX_READ_LEN {
            return Err(status(WorkerError::TooLarge(r.len)));
        }
        let file = self.file_ref(r.file)?;
        static NODE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        let here = NODE.get_or_init(cistern_rpc::node_name);
        let short_circuit = !r.short_circuit_node.is_empty() && r.short_circuit_node == *here;
        if r.recheck {
            // Reads the range back from disk: on the blocking pool.
            let (worker, f) = (self.worker.clone(), file.clone());
            let (offset, len) = (r.offset, r.len);
            tokio::task::spawn_blocking(move || worker.recheck(&f, offset, len))
                .await
                .map_err(|e| status_with_errno(5, format!("recheck: {e}")))?
                .map_err(status)?;
        }
        let reply = match self.worker.serve(&file, r.offset, r.len, short_circuit).await.map_err(status)? {
            Served::Bytes(data) => pb::ReadReply { data, local: None },
            Served::Local(l) => pb::ReadReply {
                data: Bytes::new(),
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
}

/// Reports the worker to the master every `period`, for as long as the task runs. A master
/// that is down (restarting) is simply tried again at the next beat.
pub async fn heartbeat(mut master: MasterClient<tonic::transport::Channel>, worker: Arc<Worker>, address: String, period: Duration) {
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut reached = None;
    loop {
        tick.tick().await;
        let report = pb::WorkerReport { id: worker.id as u32, address: address.clone(), figures: Some(worker.figures()) };
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
